"""DVC stage `split`: see metallo.data.split.run_split for what it reads and writes."""

from metallo.data.split import run_split
from metallo.errors import exit_on_error
from metallo.params import load_params

if __name__ == "__main__":
    with exit_on_error():
        run_split(load_params())
