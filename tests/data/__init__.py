"""Tests of metallo.data: the demo and foreign generators, ingest and its bad-input corpus, convert, split, geometry."""
