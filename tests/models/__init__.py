"""Tests of metallo.models on tiny real models."""
