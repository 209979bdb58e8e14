"""Hydra launchers from the `scale` extra: joblib in parallel processes, submitit locally, and
the Slurm config (composed only: there is no cluster here)."""

from __future__ import annotations

import json
import os

import pytest
from hydra import compose, initialize_config_dir

from conftest import TINY, run_cli, write_image_folder
from resnet_lab import CONF_DIR

pytestmark = pytest.mark.slow


def grid(tmp_path, launcher: list[str], values: str) -> list[dict]:
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    result = run_cli(
        "resnet_lab.train", "-m", *launcher, "data=image_folder", f"data.root={tmp_path / 'im'}", *TINY, "trainer.epochs=1",
        f"scheduler.max_lr={values}", "hydra.sweep.dir=sweep", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((p for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [json.loads((job / "summary.json").read_text()) for job in jobs]


def test_joblib_runs_jobs_in_parallel_processes_with_a_share_of_the_threads(tmp_path):
    summaries = grid(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], "0.01,0.02,0.05,0.1")
    assert len(summaries) == 4
    assert {s["cpu_threads"] for s in summaries} == {max(1, (os.cpu_count() or 1) // 2)}
    assert json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["n_complete"] == 4


def test_submitit_local_runs_the_same_path(tmp_path):
    summaries = grid(tmp_path, ["hydra/launcher=submitit_local"], "0.01,0.05")
    assert len(summaries) == 2 and all(0 <= s["final"]["eval_acc"] <= 1 for s in summaries)


def test_slurm_config_is_ready():
    with initialize_config_dir(str(CONF_DIR)):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min, launcher.mem_gb, launcher.array_parallelism) == ("gpu", 1, 60, 32, 16)
