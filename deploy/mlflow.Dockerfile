# The team's MLflow tracking server (deploy/compose.yaml): MLflow with the PostgreSQL driver (psycopg, SQLAlchemy's
# default for postgresql://), boto3 for the S3-compatible artifact store and Flask-WTF for its basic-auth app
# (mlflow[auth]). Same MLflow, psycopg and Flask-WTF pins as requirements.txt.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg[binary]==3.3.9" "boto3==1.44.5" "flask-wtf==1.3.0" \
    "wtforms==3.3.2"
COPY auth.ini /etc/mlflow/auth.ini
EXPOSE 5000
