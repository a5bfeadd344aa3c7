"""Console control of the libraries Metallo drives: no progress bars, no messages that say nothing here.

:func:`quiet_libraries` silences the bars and messages of the libraries (weight loading/saving bars, MLflow's
artifact bars, database set-up messages, and MLflow's hints that do not apply to Metallo's model);
:func:`no_progress_bars` and :func:`without_mlflow_hints` do so for one block of code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator

from transformers.utils import logging as hf_logging

#: MLflow warnings that do not apply: the pyfunc model has an explicit signature and input example, and the
#: processed data folder is a local path (MLflow registers two equivalent local dataset sources).
MLFLOW_HINTS = (
    r".*Add type hints to the `predict` method.*",
    r".*[Ii]nput example.*",
    r".*Hint: Inferred schema contains integer column.*",
    r".*dataset source can be interpreted in multiple ways.*",
)


#: Library log messages that say nothing useful here: logger name -> message starts. (Checkpoints saved
#: within a second of each other, as in the tiny test runs, make transformers doubt the file system.)
KNOWN_LOG_MESSAGES = {"transformers.trainer_utils": ("mtime may not be reliable",)}


class DropMessages(logging.Filter):
    """Drops the log records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.starts)


def quiet_libraries() -> None:
    """Turn off the progress bars of transformers/huggingface_hub/MLflow, MLflow's INFO messages and its links."""

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    # MLflow prints "View run ... at <url>" each time a run ends on a server (twice per training, and for
    # every run the sweep ends); train prints the run's link once itself (Tracker.run_url).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in MLFLOW_HINTS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, starts in KNOWN_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(starts))


@contextlib.contextmanager
def without_mlflow_hints() -> Iterator[None]:
    """Drop the warnings of :data:`MLFLOW_HINTS` raised inside (MLflow re-enables some with its own filters);
    every other warning is shown as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        yield
    for warning in caught:
        if not any(re.match(pattern, str(warning.message), re.IGNORECASE) for pattern in MLFLOW_HINTS):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers/huggingface_hub progress bars off inside (e.g. "Loading weights"), as they were after."""

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
