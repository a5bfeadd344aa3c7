"""DVC stage entry points, run as ``python -m stages.<name>`` from the project root.

Running them as modules puts the project root first on ``sys.path``, so a stage always runs
the ``metallo`` package of its own checkout (also inside DVC's temporary experiment copies).
"""
