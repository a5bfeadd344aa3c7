"""Tracking faults in the tracker itself: a server that answers too slowly, credentials in the tracking URI.

A real HTTP server thread on 127.0.0.1 (it stops itself), real MLflow clients; nothing is mocked.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import warnings
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from metallo.tracking import tracker as tracking
from metallo.tracking.tracker import Tracker
from metallo.uris import masked

#: The slow server's own bound: it closes every connection after this long, whatever happens.
SLOW_SERVER_LIFETIME_S = 30.0


class _SlowLoris(socketserver.BaseRequestHandler):
    """Accepts a request, then sends one header line every half second and never ends the response."""

    def handle(self) -> None:
        self.request.settimeout(1.0)
        try:
            self.request.recv(65536)
            self.request.sendall(b"HTTP/1.1 200 OK\r\n")
            started = time.monotonic()
            n = 0
            while not self.server.stopping.is_set() and time.monotonic() - started < SLOW_SERVER_LIFETIME_S:
                self.request.sendall(f"X-Slow-{n}: still here\r\n".encode())
                n += 1
                self.server.stopping.wait(0.5)
        except OSError:
            pass


@pytest.fixture
def slow_server() -> Iterator[SimpleNamespace]:
    """A server that accepts connections and answers one header line at a time: its ``uri``
    (``http://127.0.0.1:<port>``), and ``let_go()``, which ends every response it is sending."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SlowLoris)
    server.daemon_threads = True
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(uri=f"http://127.0.0.1:{server.server_address[1]}", let_go=server.stopping.set)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_that_answers_too_slowly_costs_one_deadline_and_one_warning(slow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", slow_server.uri)
    monkeypatch.setenv(tracking.DEADLINE_ENV, "2")
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracker("metallo")
        assert tracker.enabled, "the connection check passes: the server accepts"
        tracker.start(run_name="x", tags={"a": "b"})
        tracker.log_params({"train": {"learning_rate": 0.1}})
        tracker.log_metrics({"loss": 1.0}, step=1)
        tracker.finish()
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"{elapsed:.1f} s: the deadline did not bound the call"
    messages = [str(w.message) for w in caught if "MLflow" in str(w.message)]
    assert len(messages) == 1, messages
    assert "did not answer within 2 s" in messages[0] and tracking.DEADLINE_ENV in messages[0]
    assert tracker.enabled is False and tracker.run_id is None
    # the abandoned call, once the server lets go of it, makes no run and prints nothing
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        abandoned = [t for t in threading.enumerate() if t.name == "metallo-tracking-call"]
        slow_server.let_go()
        for thread in abandoned:
            thread.join(timeout=60)
    assert not any(t.is_alive() for t in abandoned)
    assert tracker.run_id is None and tracker.experiment_id is None
    assert [str(w.message) for w in later] == []


def test_the_deadline_setting_must_be_a_positive_number(monkeypatch):
    from metallo.errors import MetalloError

    monkeypatch.setenv(tracking.DEADLINE_ENV, "soon")
    with pytest.raises(MetalloError, match=f"{tracking.DEADLINE_ENV}.*'soon'"):
        tracking.call_deadline()


@pytest.mark.parametrize(
    "text,shown",
    [
        ("http://alice:S3cr3t@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        ("https://token@mlflow.example/#/x", "https://***@mlflow.example/#/x"),
        ("see postgresql://metallo:pw@127.0.0.1:5432/mlflow (x)", "see postgresql://***@127.0.0.1:5432/mlflow (x)"),
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
        ("sqlite:////tmp/a@b/mlflow.db", "sqlite:////tmp/a@b/mlflow.db"),
    ],
)
def test_user_information_of_uris_is_masked(text, shown):
    assert masked(text) == shown


def test_credentials_in_the_tracking_uri_are_never_printed(monkeypatch):
    secret_uri = f"http://alice:S3cr3t@127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = Tracker("metallo")
    (message,) = [str(w.message) for w in caught if "MLflow" in str(w.message)]
    assert "S3cr3t" not in message and "alice" not in message and "http://***@127.0.0.1" in message

    tracker.enabled, tracker.run_id, tracker.experiment_id = True, "abc", "1"
    assert tracker.run_url.startswith("http://***@127.0.0.1") and "S3cr3t" not in tracker.run_url
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.call("fail", lambda: (_ for _ in ()).throw(RuntimeError(f"request to {secret_uri}/api failed")))
    (message,) = [str(w.message) for w in caught]
    assert "S3cr3t" not in message and message.count("***@") == 2


def test_a_full_disk_during_training_ends_the_run_failed_with_a_clear_message(tmp_path, monkeypatch):
    """``/dev/full`` answers every write with ENOSPC, as a full disk does; the train stage's error handling
    (:func:`metallo.training.train.failing_run`) ends the MLflow run FAILED and says what to do."""
    import mlflow

    from metallo.errors import MetalloError
    from metallo.training.train import failing_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracker = Tracker("metallo")
    run_id = tracker.start(run_name="full disk")
    with pytest.raises(MetalloError) as err, failing_run(tracker, "train"):
        with open("/dev/full", "wb") as f:
            f.write(b"checkpoint" * 100_000)
    message = str(err.value)
    assert message.startswith("train: no space left on the device") and "No space left on device" in message
    assert "Free space" in message and "run the stage again" in message
    assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FAILED"


def test_a_full_disk_is_recognised_through_the_libraries_own_errors():
    from metallo.io import disk_full

    with pytest.raises(OSError) as raised:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 1_000_000)
    assert disk_full(raised.value)
    try:
        try:
            raise raised.value
        except OSError:
            raise ValueError("saving the checkpoint failed") from None  # Python still records the context
    except ValueError as wrapped:
        assert disk_full(wrapped)
    # safetensors reports the OS error inside its own exception's text
    assert disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, ... })"))
    assert not disk_full(OSError(13, "Permission denied"))
