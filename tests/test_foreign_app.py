"""resnet_lab's Optuna sweeper as a drop-in for hydra-optuna-sweeper on a Hydra app that is not
resnet_lab: no resnet_lab config keys, a minimised objective, failed (NaN) results, and a study
continued to its total by the same command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

APP = """
import hydra
from hydra.core.plugins import Plugins

from resnet_lab.sweep.optuna_sweeper import ResumableOptunaSweeper

Plugins.instance().register(ResumableOptunaSweeper)


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg) -> float:
    return float("nan") if cfg.x > 3 else (cfg.x - 2) ** 2 + cfg.y


if __name__ == "__main__":
    main()
"""

CONFIG = {
    "defaults": [{"override hydra/sweeper": "optuna"}, "_self_"],
    "x": 0.0,
    "y": 0,
    "hydra": {
        "sweeper": {
            "_target_": "resnet_lab.sweep.optuna_sweeper.ResumableOptunaSweeper",
            "direction": "minimize",
            "study_name": "foreign",
            "storage": "sqlite:///foreign.db",
            "n_trials": 6,
            "n_jobs": 2,
            "max_failure_rate": 1.0,
            "sampler": {"seed": 1},
            "params": {"x": "interval(-1, 5)", "y": "choice(0, 1)"},
        },
        "sweep": {"dir": "sweep"},
    },
}


def sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "app.py", "-m", *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_plain_hydra_app_sweeps_minimises_records_failures_and_continues(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "conf" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    first = sweep(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    study = optuna.load_study(study_name="foreign", storage=f"sqlite:///{tmp_path / 'foreign.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and len(study.trials) == 6
    for trial in study.trials:
        expected = "FAIL" if trial.params["x"] > 3 else "COMPLETE"
        assert trial.state.name == expected, (trial.params, trial.state)
        assert trial.user_attrs["run_dir"] == str(tmp_path / "sweep" / str(trial.number))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = min(complete, key=lambda t: t.value)
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(best.value), "the plugin's own result file"
    report = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert report["best"]["number"] == best.number and report["n_failed"] == 6 - len(complete)

    more = sweep(tmp_path, "hydra.sweeper.n_trials=8", "hydra.sweep.dir=sweep2")
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(optuna.load_study(study_name="foreign", storage=f"sqlite:///{tmp_path / 'foreign.db'}").trials) == 8
