"""``python -m metallo.data.variants``: see :mod:`metallo.data.variants.cli`."""

from metallo.data.variants.cli import _main

if __name__ == "__main__":
    _main()
