"""Hydra launchers from the `scale` extra: joblib in parallel processes, submitit locally, Ray
tasks on a real local Ray head, and the Slurm config (composed only: there is no cluster here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import TINY, add_finished_trial, run_cli, write_image_folder
from resnet_lab import CONF_DIR

pytestmark = pytest.mark.slow


def pruned_sweep(tmp_path, launcher: list[str], env: dict[str, str] | None = None) -> list:
    """An Optuna sweep of two 2-epoch trials launched together through `launcher`, on a relative SQLite path and sweep folder, whose
    median pruner judges them against a finished trial whose curve was 0.0 then 0.99. Each job
    reaches its trial through the study's storage (not the sweeper's live handle) and records its
    learning curve there; after epoch 2 a trial below 0.99 is stopped and recorded as PRUNED."""
    import optuna

    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    study = optuna.create_study(study_name="resnet_lab", storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    add_finished_trial(study, (0.1, 0.2), {1: 0.0, 2: 0.99})
    pruning = ["hparams_search.pruner.kind=median", "hparams_search.pruner.startup_trials=1", "hparams_search.pruner.warmup_epochs=0"]
    result = run_cli(
        "resnet_lab.train",
        "-m",
        "hparams_search=optuna",
        *launcher,
        "data=image_folder",
        f"data.root={tmp_path / 'im'}",
        *TINY,
        "trainer.epochs=2",
        "hparams_search.max_lr_bounds=[0.1,0.2]",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.storage=sqlite:///study.db",
        "hydra.sweep.dir=sweep",
        *pruning,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="resnet_lab", storage=f"sqlite:///{tmp_path / 'study.db'}").trials[1:]
    assert len(trials) == 2
    for trial in trials:
        outputs = tmp_path / "sweep" / str(trial.number)
        assert (outputs / "summary.json").is_file() and (outputs / "metrics.csv").is_file(), "the job wrote into the sweep's folder, wherever it ran"
        assert list(trial.intermediate_values) == [1, 2] and trial.intermediate_values[2] >= 0.6, "each job learns (chance is 1/3)"
        if trial.intermediate_values[2] < 0.99:
            assert trial.state.name == "PRUNED" and trial.user_attrs["pruned_at_epoch"] == 2
        else:
            assert trial.state.name == "COMPLETE" and trial.value == trial.intermediate_values[2]
    return trials


def test_joblib_runs_trials_in_parallel_processes_that_report_their_epochs_to_the_study_and_prune(tmp_path):
    """Each trial runs in a joblib worker process with its share of the CPU threads."""
    trials = pruned_sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    summaries = [json.loads((tmp_path / "sweep" / str(t.number) / "summary.json").read_text()) for t in trials]
    assert {s["cpu_threads"] for s in summaries} == {max(1, (os.cpu_count() or 1) // 2)}


def test_submitit_local_runs_the_same_path_its_jobs_report_their_epochs_and_are_pruned(tmp_path):
    pruned_sweep(tmp_path, ["hydra/launcher=submitit_local"])


@pytest.fixture
def ray_head():
    """A real Ray head on loopback, started the way docs/scaling.md says, stopped with the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 108 bytes
    ray = Path(sys.executable).parent / "ray"
    # Ray >= 2.60 turns on token authentication for a new head; this loopback one goes without.
    head = subprocess.Popen(
        [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while subprocess.run([str(ray), "status", f"--address={address}"], capture_output=True).returncode != 0:
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(1)
        yield address
    finally:
        head.terminate()
        head.wait(timeout=60)


def test_ray_launcher_runs_jobs_as_tasks_on_a_running_cluster_that_report_their_epochs_and_are_pruned(tmp_path, ray_head):
    """address=auto finds only a running cluster (RAY_ADDRESS here): without the head this fails.
    A Ray task runs in a working directory of Ray's: the study file named relative to the
    sweep's reaches it as an absolute path."""
    launcher = ["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_gpus=0", "hydra.launcher.ray.remote.num_cpus=1"]
    pruned_sweep(tmp_path, launcher, env={"RAY_ADDRESS": ray_head})


def test_ray_fails_at_once_when_no_node_can_hold_a_job(tmp_path, ray_head):
    """The cluster has 2 CPUs and no GPU; the default request (1 GPU, 4 CPUs per job) would
    otherwise be queued by Ray for ever."""
    write_image_folder(tmp_path / "im", train_per_class=8, test_per_class=4)
    result = run_cli(
        "resnet_lab.train",
        "-m",
        "hydra/launcher=ray_cluster",
        "data=image_folder",
        f"data.root={tmp_path / 'im'}",
        *TINY,
        "scheduler.max_lr=0.1,0.2",
        cwd=tmp_path,
        timeout=120,
        env={"RAY_ADDRESS": ray_head},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the Ray cluster can never run these jobs") and "GPU 1, CPU 4" in last and "GPU 0, CPU 2" in last


@pytest.mark.parametrize(
    "remote, fits",
    [
        ({"num_gpus": 1, "num_cpus": 4}, True),
        ({"num_gpus": 2, "num_cpus": 4}, False),
        ({"num_cpus": 16}, False),
        ({"resources": {"tpu": 1}}, False),
        ({}, True),
    ],
)
def test_a_job_fits_only_when_one_node_holds_its_whole_request(remote, fits):
    from resnet_lab.config import ConfigError
    from resnet_lab.sweep.ray_launcher import check_placeable

    nodes = [{"CPU": 8.0, "GPU": 1.0}, {"CPU": 2.0, "GPU": 2.0}]
    if fits:
        check_placeable(remote, nodes)
    else:
        with pytest.raises(ConfigError, match="can never run these jobs"):
            check_placeable(remote, nodes)


def test_slurm_config_is_ready():
    with initialize_config_dir(str(CONF_DIR)):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min, launcher.mem_gb, launcher.array_parallelism) == ("gpu", 1, 60, 32, 16)


def test_ray_cluster_config_asks_one_gpu_per_job_of_the_running_cluster():
    with initialize_config_dir(str(CONF_DIR)):
        cfg = compose("train", overrides=["hydra/launcher=ray_cluster"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("CheckedRayLauncher")
    assert launcher.ray.init.address == "auto" and launcher.ray.remote.num_gpus == 1
