"""Data stages: synthesize → ingest → convert → split, and the training datasets."""
