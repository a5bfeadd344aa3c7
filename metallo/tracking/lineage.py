"""MLflow conventions: where a run came from, what data it used, which model it made, and the registry.

* **Source tags** (``mlflow.user``, ``mlflow.source.name``, ``mlflow.source.type``,
  ``mlflow.source.git.commit``): the tags MLflow's own ``start_run`` sets, which the UI shows as the run's
  source and commit.
* **Dataset inputs**: the train, validation and test splits as MLflow datasets (sample ids and labels;
  digest = the processed data and split hash + the split name; source = the processed data folder), logged
  as run inputs with the contexts ``training``, ``validation``, ``testing``.
* **Logged model**: the pyfunc model ``train`` logs is an MLflow ``LoggedModel``; ``evaluate`` links the
  test metrics to it (and to the test dataset) and finds it again by its source run.
* **Model registry**: with ``tracking.register: <name>`` (default ``metallo``; empty = off) ``evaluate``
  registers the model as a new version of ``<name>``, tags the version with its test metrics, describes it
  (test RMSE beside the baselines) and points the alias :data:`BEST_ALIAS` at the version with the lowest
  test RMSE.
* **Run lookup**: the run is tagged with the digest of the weights it produced (``metallo.model_digest``),
  so ``evaluate`` finds the run of the model it evaluates even when DVC restored ``models/model`` from its
  run cache and the untracked ``models/run.json`` is stale or missing.

Every call goes through the :class:`~metallo.tracking.tracker.Tracker`'s failure policy: an MLflow error
warns once and the pipeline carries on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metallo.io import sha256_file
from metallo.layout import PATHS, Paths
from metallo.params import flatten, section
from metallo.tracking.tracker import NOTE_TAG, Tracker, TrackingParams, create_or_find

MODEL_DIGEST_TAG = "metallo.model_digest"
#: Alias of the registered version with the lowest test RMSE.
BEST_ALIAS = "best"
#: Split name → MLflow's dataset context.
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}
WEIGHTS_FILE = "model.safetensors"


def model_digest(model_dir: str | os.PathLike) -> str:
    """sha256 of the model's weights (``model.safetensors``); ``""`` when there are none."""
    weights = Path(model_dir) / WEIGHTS_FILE
    return sha256_file(weights) if weights.is_file() else ""


def entry_point() -> str:
    """The script that runs (``stages/train.py`` under DVC), relative to the working folder when inside it."""
    script = Path(sys.argv[0] or "metallo").resolve()
    try:
        return script.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return script.name


def source_tags() -> dict[str, str]:
    """MLflow's standard source tags for this process: MLflow's own run-context providers set the user, the
    source type, the git commit, branch and repository (``resolve_tags``, what ``mlflow.start_run`` calls).
    Only the source name is given: MLflow would record the absolute script path, which for a queued DVC
    experiment is a temporary copy under ``.dvc/tmp/exps``; the project-relative ``stages/train.py`` is kept."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_SOURCE_NAME

    return {key: str(value) for key, value in resolve_tags({MLFLOW_SOURCE_NAME: entry_point()}).items()}


def committed_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any] | None:
    """``params.yaml`` as the current git commit holds it (the baseline ``dvc exp show`` compares with), or
    ``None`` outside a git repository or before the first commit."""
    import yaml

    try:
        import git

        repo = git.Repo(Path.cwd(), search_parent_directories=True)
        relative = (Path.cwd() / path).resolve().relative_to(Path(repo.working_tree_dir).resolve())
        text = repo.head.commit.tree[relative.as_posix()].data_stream.read().decode()
        return yaml.safe_load(text) or {}
    except Exception:  # noqa: BLE001 - no repository, no commit, no such file: no baseline to compare with
        return None


def changed_params(params: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """``name -> (committed, now)`` for each param that differs from ``baseline`` (dotted names)."""
    if baseline is None:
        return {}
    before, after = flatten(baseline), flatten(params)
    keys = sorted(set(before) | set(after))
    return {key: (before.get(key), after.get(key)) for key in keys if before.get(key) != after.get(key)}


def run_note(experiment_name: str, model_name: str, changed: Mapping[str, tuple[Any, Any]]) -> str:
    """A run's description (``mlflow.note.content``): the DVC experiment, the model, the changed params."""
    lines = [
        f"DVC experiment `{experiment_name}`, model `{model_name}`."
        if experiment_name
        else f"`dvc repro` (no DVC experiment name), model `{model_name}`."
    ]
    if changed:
        lines += ["", "Params changed from the commit:", ""]
        lines += [f"- `{key}`: {before!r} → {after!r}" for key, (before, after) in changed.items()]
    else:
        lines += ["", "Params as committed."]
    return "\n".join(lines)


#: Where the results start in a run's description (``evaluate`` replaces what follows).
RESULTS_HEADING = "**Test split**"


def note_with_results(note: str, metrics: Mapping[str, float]) -> str:
    """``note`` with its results part (test RMSE beside the baselines) replaced by ``metrics``'s."""
    head = note.split(RESULTS_HEADING)[0].rstrip()
    return f"{head}\n\n{RESULTS_HEADING} (evaluate)\n\n{results_table(metrics)}".strip()


def split_datasets(datasets: Mapping[str, Any], source: str | os.PathLike, data_digest: str) -> dict[str, Any]:
    """One MLflow dataset per split (``sample_id``, ``dos``), named by the split."""
    import mlflow.data
    import pandas as pd

    out = {}
    for split, dataset in datasets.items():
        frame = pd.DataFrame({"sample_id": list(dataset.sample_ids), "dos": dataset.labels.astype("float64")})
        digest = hashlib.sha256(f"{data_digest}:{split}".encode()).hexdigest()[:10]
        out[split] = mlflow.data.from_pandas(
            frame, source=str(Path(source).resolve()), targets="dos", name=split, digest=digest
        )
    return out


def log_datasets(tracker, datasets: Mapping[str, Any]) -> None:
    """Log the splits' MLflow datasets as inputs of the tracker's run (``mlflow.data.context`` tags)."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = [
        DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])
        for split, dataset in datasets.items()
    ]

    def _log() -> None:
        def log_inputs() -> None:
            tracker.client().log_inputs(tracker.run_id, datasets=inputs)

        # Another run may log the same dataset (same split, same data) between MLflow's check and its insert;
        # then the second call finds that dataset and links it to this run.
        create_or_find(log_inputs, log_inputs)

    tracker.call("log the datasets", _log)


def find_run(tracker, digest: str) -> str | None:
    """The newest run of the tracker's experiment tagged with the model digest ``digest``."""

    def _find() -> str | None:
        client = tracker.client()
        experiment = client.get_experiment_by_name(tracker.experiment)
        if experiment is None or not digest:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{MODEL_DIGEST_TAG}` = '{digest}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    return tracker.call("look up the run of this model", _find)


def find_logged_model(tracker) -> str | None:
    """The id of the LoggedModel the tracker's run produced (the pyfunc model), or ``None``."""

    def _find() -> str | None:
        client = tracker.client()
        run = client.get_run(tracker.run_id)
        models = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{tracker.run_id}'"
        )
        return models[0].model_id if models else None

    return tracker.call("look up the logged model", _find)


def unlogged(tracker, metrics: Mapping[str, float | None]) -> dict[str, float]:
    """The finite ``metrics`` the run does not hold yet with that value (a re-evaluation of the same model
    logs nothing twice: one value per metric and step)."""
    run = tracker.call("read the run", lambda: tracker.client().get_run(tracker.run_id))
    logged = run.data.metrics if run else {}
    return {
        key: float(value)
        for key, value in metrics.items()
        if value is not None and math.isfinite(value) and logged.get(key) != float(value)
    }


def log_model_metrics(tracker, metrics: Mapping[str, float], model_id: str | None, dataset=None) -> None:
    """Log ``metrics`` (step 0) to the run, linked to the LoggedModel ``model_id`` and to ``dataset``."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = [
        Metric(
            key,
            value,
            now,
            0,
            model_id=model_id,
            run_id=tracker.run_id,
            dataset_name=getattr(dataset, "name", None),
            dataset_digest=getattr(dataset, "digest", None),
        )
        for key, value in unlogged(tracker, metrics).items()
    ]
    if values:
        tracker.call("log metrics", lambda: tracker.client().log_batch(tracker.run_id, metrics=values))


def results_table(metrics: Mapping[str, float]) -> str:
    """The test RMSE and R² of the model beside the baselines' (``test/rmse``, ``baseline/classical/rmse``, ...)
    as a Markdown table; ``""`` without test metrics."""
    rows = [("model", "test"), ("classical baseline", "baseline/classical"), ("mean baseline", "baseline/mean")]
    table = [
        f"| {label} | {metrics[f'{key}/rmse']:.4g} | {metrics.get(f'{key}/r2', math.nan):.3f} |"
        for label, key in rows
        if metrics.get(f"{key}/rmse") is not None
    ]
    return "\n".join(["| test split | RMSE | R² |", "|---|---:|---:|", *table]) if table else ""


def version_description(metrics: Mapping[str, float], run_name: str = "") -> str:
    """A model version's description: where it came from and its test metrics beside the baselines."""
    head = f"Trained by the run {run_name!r}; evaluated by `evaluate` on the test split." if run_name else ""
    return "\n\n".join(part for part in (head, results_table(metrics)) if part)


def _test_rmse(version) -> float:
    """A version's test RMSE from its tags (``test/rmse``; ``test_rmse`` on versions registered before)."""
    return float(version.tags.get("test/rmse", version.tags.get("test_rmse", "inf")))


def register_model(
    tracker, name: str, model_id: str, metrics: Mapping[str, float], description: str = ""
) -> str | None:
    """Register ``model_id`` as a version of ``name`` (once per run), tag it with ``metrics`` (``test/rmse``
    ...), describe it, mark the LoggedModel as registered and move the :data:`BEST_ALIAS` alias to the
    version with the lowest ``test/rmse``. Returns the version."""

    def _register() -> str:
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

        client = tracker.client()
        create_or_find(  # two evaluates (queued experiments) may both be the first; the loser uses the winner's
            lambda: client.create_registered_model(
                name,
                description="Metallo DOS regressors, one version per evaluated training run (registered by "
                f"`evaluate`). The alias `{BEST_ALIAS}` points at the version with the lowest test RMSE.",
            ),
            lambda: None,
        )
        existing = client.search_model_versions(f"name = '{name}' and run_id = '{tracker.run_id}'")
        version = (
            existing[0]
            if existing
            else client.create_model_version(
                name, source=f"models:/{model_id}", run_id=tracker.run_id, model_id=model_id, description=description
            )
        )
        if existing and description:
            client.update_model_version(name, version.version, description=description)
        for key, value in metrics.items():
            if key.startswith("test/") and value is not None and value == value:
                client.set_model_version_tag(name, version.version, key, f"{float(value):.6g}")
        # MLflow's fluent register_model also tags the LoggedModel with its versions (the UI's "Registered" link);
        # the client call made here does not, so it is done as MLflow does it.
        logged = client.get_logged_model(model_id)
        versions = json.loads(logged.tags.get(MLFLOW_MODEL_VERSIONS, "[]"))
        entry = {"name": name, "version": str(version.version)}
        if entry not in versions:
            client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*versions, entry])})
        best = min(client.search_model_versions(f"name = '{name}'"), key=_test_rmse)
        client.set_registered_model_alias(name, BEST_ALIAS, best.version)
        return str(version.version)

    return tracker.call(f"register the model as {name!r}", _register)


@functools.lru_cache(maxsize=64)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, computed once per process for one version of it (train asks three times)."""
    return sha256_file(path)


def data_digests(paths: Paths = PATHS) -> dict[str, str]:
    """``{file: sha256}`` of every file under the folders the train stage reads its data from (the processed
    data and the split), hidden files (an interrupted write's temporary) left out."""
    digests = {}
    for folder in (paths.processed, paths.split):
        for path in sorted(Path(folder).rglob("*")) if Path(folder).is_dir() else ():
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
                stat = path.stat()
                digests[path.as_posix()] = _digest(os.fspath(path), stat.st_size, stat.st_mtime_ns)
    return digests


def data_hash(paths) -> str:
    """A short digest of the processed data and the split (``data.hash`` tag, the datasets' digest): of the
    files the checkpoints' fingerprint covers."""
    return hashlib.sha256(json.dumps(data_digests(paths), sort_keys=True).encode()).hexdigest()[:16]


def _resolved(baseline: dict | None, resolve) -> dict | None:
    """The committed params as the train stage would see them (``resolve`` applied, when it can be)."""
    if baseline is None or resolve is None:
        return baseline
    try:
        return resolve(baseline)
    except Exception:  # noqa: BLE001 - a committed file this code cannot read: compare it as it is
        return baseline


def start_run(params: dict, datasets: Mapping[str, Any], paths, *, enabled: bool, resolve=None):
    """Open the train stage's MLflow run: standard source tags, Metallo's tags, the params and the datasets.

    The run is named after the DVC experiment when there is one (else the model and the time). Its description
    lists the params that differ from the committed ``params.yaml``, after ``resolve`` (the train stage's
    profile, which fills the ``auto`` keys) has been applied to that file as it was to ``params``.
    Returns the :class:`~metallo.tracking.tracker.Tracker` (disabled when ``enabled`` is false).
    """
    from datetime import datetime

    tracker = Tracker(TrackingParams.from_params(params).experiment, enabled=enabled)
    if not tracker.enabled:
        return tracker
    model_name = section(params, "model")["name"]
    experiment_name = os.environ.get("DVC_EXP_NAME", "")
    digest = data_hash(paths)
    tags = {
        **(tracker.call("read the source tags", source_tags) or {}),
        "data.hash": digest,
        "model.name": model_name,
        **({"dvc.experiment": experiment_name} if experiment_name else {}),
        NOTE_TAG: run_note(experiment_name, model_name, changed_params(params, _resolved(committed_params(), resolve))),
    }
    tracker.start(run_name=experiment_name or f"{model_name} {datetime.now():%Y-%m-%d %H:%M:%S}", tags=tags)
    tracker.log_params(params)
    inputs = tracker.call("describe the datasets", lambda: split_datasets(datasets, paths.processed, digest))
    if inputs:
        log_datasets(tracker, inputs)
    return tracker
