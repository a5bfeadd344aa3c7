"""DVC stage `ingest`: see metallo.data.ingest.run_ingest for what it reads and writes."""

from metallo.data.ingest import run_ingest
from metallo.errors import exit_on_error
from metallo.params import load_params

if __name__ == "__main__":
    with exit_on_error():
        run_ingest(load_params())
