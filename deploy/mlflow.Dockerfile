# The team's MLflow tracking server (deploy/compose.yaml): MLflow with the PostgreSQL driver (psycopg, SQLAlchemy's
# default for postgresql://) and boto3 for the S3-compatible artifact store. Same MLflow and psycopg pins as
# requirements.txt; this set resolves together (pip install --dry-run).
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg[binary]==3.3.9" "boto3==1.44.5"
EXPOSE 5000
