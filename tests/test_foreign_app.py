"""resnet_lab's Optuna sweeper as a drop-in for hydra-optuna-sweeper on a Hydra app that is not
resnet_lab: no resnet_lab config keys, a minimised objective, failed (NaN) results, and a study
continued to its total by the same command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
def main(cfg):
    value = float("nan") if cfg.x > 3 else (cfg.x - 2) ** 2 + cfg.y
    return (value, float(cfg.y)) if cfg.pair else value


if __name__ == "__main__":
    main()
"""

CONFIG = {
    "defaults": [{"override hydra/sweeper": "optuna"}, "_self_"],
    "x": 0.0,
    "y": 0,
    "z": 0.0,
    "pair": False,
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


PLUGIN = "hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
SPACE = """
def extend(cfg, trial):
    trial.suggest_float("z", 0.0, 1.0)
"""


def app(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "app.py").write_text(APP)
    (folder / "space.py").write_text(SPACE)
    (folder / "conf" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return folder


def sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{cwd}"}
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

    assert (tmp_path / "sweep" / "optimization_history.png").is_file()

    more = sweep(tmp_path, "hydra.sweeper.n_trials=8", "hydra.sweep.dir=sweep2", "+hydra.sweeper.plots=false")
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(optuna.load_study(study_name="foreign", storage=f"sqlite:///{tmp_path / 'foreign.db'}").trials) == 8
    assert (tmp_path / "sweep2" / "sweep_summary.json").is_file() and not list((tmp_path / "sweep2").glob("*.png")), "plots=false: the report without its plots"


def job_folders(sweep_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit())


@pytest.mark.parametrize("storage", ["null", "sqlite:///unnamed.db", "journal:///unnamed.log"])
def test_an_unnamed_study_ends_with_exactly_n_trials(tmp_path, storage):
    """The plugin's own default, study_name: null, on every kind of storage."""
    done = sweep(app(tmp_path), "hydra.sweeper.study_name=null", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert job_folders(tmp_path / "sweep") == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n_jobs", [1, 10])
def test_a_grid_ends_when_its_points_are_used_up(tmp_path, n_jobs):
    grid = ["hydra/sweeper/sampler=grid", "hydra.sweeper.params.x='choice(0,1,2)'", "hydra.sweeper.n_trials=10", f"hydra.sweeper.n_jobs={n_jobs}"]
    done = sweep(app(tmp_path), *grid, "hydra.sweeper.study_name=grid")
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{tmp_path / 'foreign.db'}")
    assert sorted((t.params["x"], t.params["y"]) for t in study.trials) == [(x, y) for x in (0, 1, 2) for y in (0, 1)]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())["best_value"] == min(t.value for t in study.trials)


def test_two_objectives_write_every_best_trial(tmp_path):
    done = sweep(
        app(tmp_path), "pair=true", "hydra.sweeper.direction=[minimize,minimize]", "hydra.sweeper.study_name=pair", "hydra.sweeper.params.x='interval(-1,3)'"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{tmp_path / 'foreign.db'}")
    solutions = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())["solutions"]
    assert sorted(s["values"] for s in solutions) == sorted(t.values for t in study.best_trials) and solutions


def test_a_custom_search_space_is_drawn_and_a_clash_with_a_fixed_value_is_an_error(tmp_path):
    app(tmp_path)
    done = sweep(tmp_path, "hydra.sweeper.custom_search_space=space.extend", "hydra.sweeper.study_name=custom")
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="custom", storage=f"sqlite:///{tmp_path / 'foreign.db'}")
    assert all(0.0 <= t.params["z"] <= 1.0 for t in study.trials) and len(study.trials) == 6
    clash = sweep(tmp_path, "hydra.sweeper.custom_search_space=space.extend", "hydra.sweeper.study_name=clash", "z=5", "hydra.sweep.dir=clash")
    assert clash.returncode != 0 and "z is both fixed and searched" in clash.stderr, clash.stderr[-3000:]
    clashed = optuna.load_study(study_name="clash", storage=f"sqlite:///{tmp_path / 'foreign.db'}")
    assert not [t for t in clashed.trials if t.state.name == "RUNNING"]


def test_the_same_seed_draws_the_plugins_trials(tmp_path):
    """hydra-optuna-sweeper itself and this sweeper, one trial at a time with the same seed."""
    settings = ["hydra.sweeper.n_trials=10", "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=3"]
    theirs = sweep(app(tmp_path / "plugin"), PLUGIN, *settings, "hydra.sweeper.study_name=seeded")
    ours = sweep(app(tmp_path / "ours"), *settings, "hydra.sweeper.study_name=seeded")
    assert theirs.returncode == 0 and ours.returncode == 0, (theirs.stderr[-2000:], ours.stderr[-2000:])
    drawn = [
        [t.params for t in optuna.load_study(study_name="seeded", storage=f"sqlite:///{folder / 'foreign.db'}").trials]
        for folder in (tmp_path / "plugin", tmp_path / "ours")
    ]
    assert drawn[0] == drawn[1] and len(drawn[0]) == 10


def test_a_continued_study_takes_over_dead_trials_of_any_machine_and_never_a_live_one(tmp_path):
    """Two trials RUNNING on a machine of another name: one silent for hours (its process died
    with its container), one beating now. The continued sweep takes the first and leaves the second."""
    app(tmp_path)
    storage = f"sqlite:///{tmp_path / 'foreign.db'}"
    study = optuna.create_study(study_name="foreign", storage=storage, direction="minimize")
    dead, live = study.ask(), study.ask()
    for trial, beat in ((dead, 0.0), (live, time.time() + 3600)):
        trial.set_user_attr("worker", f"another-host:{trial.number + 100}")
        trial.set_user_attr("heartbeat_unix_s", beat)
    done = sweep(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="foreign", storage=storage).trials
    assert trials[dead.number].state.name == "FAIL" and trials[live.number].state.name == "RUNNING"
    assert sum(t.state.name in ("COMPLETE", "FAIL") and "run_dir" in t.user_attrs for t in trials) == 3  # with the live one: 4
    report = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert report["n_trials"] == 3
