"""Tests of the benchmark (metallo.bench) and the yardstick (bench/yardstick.py, baselines, compare)."""
