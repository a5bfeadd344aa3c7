"""``python -m metallo.bench``: see :mod:`metallo.bench`."""

import sys

from metallo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
