"""Helpers shared by the tests: project.py (a tiny DVC project), data.py (raw-data files), arrays.py
(datasets over arrays), pipeline.py (stage runs, copies and errors of a project)."""
