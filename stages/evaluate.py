"""DVC stage `evaluate`: see metallo.evaluation.run_evaluate for what it reads and writes."""

from metallo.errors import exit_on_error
from metallo.evaluation import run_evaluate
from metallo.params import load_params

if __name__ == "__main__":
    with exit_on_error():
        run_evaluate(load_params())
