"""metallo.pipeline.STAGES, the one stage table, says what dvc.yaml says."""

from __future__ import annotations

import yaml

from metallo.pipeline import BY_COMMAND, STAGES
from tests.helpers.imports import ROOT

DVC_STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_the_table_lists_dvc_yaml_stages_in_order():
    assert [stage.name for stage in STAGES] == list(DVC_STAGES)
    assert len(BY_COMMAND) == len(STAGES)


def test_each_stage_runs_its_script_and_reads_the_params_dvc_tracks():
    for stage in STAGES:
        assert DVC_STAGES[stage.name]["cmd"] == f"python -m stages.{stage.name}"
        assert (ROOT / "stages" / f"{stage.name}.py").is_file()
        assert list(stage.params) == DVC_STAGES[stage.name]["params"], stage.name
