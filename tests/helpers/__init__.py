"""Helpers shared by the tests: project.py (a tiny DVC project), data.py (raw-data files), corpus.py (the raw-data
corpus of valid and hostile rows), imports.py (the import graph), arrays.py
(datasets over arrays), pipeline.py (stage runs, copies and errors of a project)."""
