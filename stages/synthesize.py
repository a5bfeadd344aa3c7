"""DVC stage `synthesize`: see metallo.data.synthesize.run_synthesize for what it reads and writes."""

from metallo.data.synthesize import run_synthesize
from metallo.errors import exit_on_error
from metallo.params import load_params

if __name__ == "__main__":
    with exit_on_error():
        run_synthesize(load_params())
