"""Tests of the pipeline as a user runs it: DVC stages, the CLI, reliability, fault injection, soak."""
