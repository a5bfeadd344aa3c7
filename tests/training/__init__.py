"""Tests of metallo.training: arguments, metrics, tracking, checkpoints, distributed training."""
