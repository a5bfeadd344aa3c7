# Metallo: the pipeline in a container. Build:  docker build -t metallo .
# Run the demo:  docker run --rm metallo            (GPU: docker run --rm --gpus all metallo)
# Your data:     docker run --rm --gpus all -v "$PWD/mydata:/workspace/metallo/mydata" metallo \
#                  dvc exp run -S ingest.raw_dir=mydata
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg GIT_AUTHOR_NAME=metallo GIT_AUTHOR_EMAIL=metallo@localhost \
    GIT_COMMITTER_NAME=metallo GIT_COMMITTER_EMAIL=metallo@localhost
RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace/metallo
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md Makefile params.yaml dvc.yaml .dvcignore .gitignore ./
COPY metallo ./metallo
COPY stages ./stages
COPY docs ./docs
RUN pip install --no-cache-dir --no-deps -e . \
    && git init -q && dvc init -q && git add -A && git commit -qm "metallo image"

CMD ["dvc", "repro"]
