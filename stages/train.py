"""DVC stage `train`: see metallo.training.train.run_train for what it reads and writes."""

from metallo.errors import exit_on_error
from metallo.params import load_params
from metallo.training.train import run_train

if __name__ == "__main__":
    with exit_on_error():
        run_train(load_params())
