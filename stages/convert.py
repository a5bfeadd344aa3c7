"""DVC stage `convert`: see metallo.data.convert.run_convert for what it reads and writes."""

from metallo.data.convert import run_convert
from metallo.errors import exit_on_error
from metallo.params import load_params

if __name__ == "__main__":
    with exit_on_error():
        run_convert(load_params())
