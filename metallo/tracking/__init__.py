"""Experiment tracking, below training, evaluation and prediction: the MLflow :class:`~metallo.tracking.tracker.Tracker`
(store, runs, deadlines), lineage (datasets, model digests, registry), the sweep of stale runs, and the console
control of the libraries it drives."""
