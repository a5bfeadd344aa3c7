"""Training with ``transformers.Trainer``: arguments from params, metrics, MLflow tracking."""
