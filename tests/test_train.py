"""Training end to end: learning signal, run-directory contents, kill-and-resume, multirun."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import BARE_ENV, TINY, compose_config, configured_model, run_main, write_image_folder
from resnet_lab.config import validate
from resnet_lab.job import JobContext
from resnet_lab.train.checkpoint import load_checkpoint
from resnet_lab.train.progress import CpuEstimate, ProgressLog, duration
from resnet_lab.train.run import run_training

TIMING_COLUMNS = {"epoch_time_s", "images_per_s"}


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def test_tiny_training_learns_the_synthetic_classes(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=64, test_per_class=20)
    cfg = compose_config(["data=image_folder", f"data.root={root}", *TINY, "trainer.epochs=4", "scheduler.max_lr=0.05", "trainer.label_smoothing=0"])
    accuracy = run_training(validate(cfg), JobContext(tmp_path / "run")).objective
    # 3 classes (chance 33%) told apart by colour and stripe direction: a working loop gets
    # nearly all 60 test images right; 80% leaves room for seed-to-seed wobble only.
    assert accuracy >= 0.8
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["eval_acc"] == accuracy and summary["epochs"] == 4
    assert summary["num_params"] == sum(p.numel() for p in torch.nn.Module.parameters(_model_of(tmp_path / "run")))


def _model_of(run_dir: Path) -> torch.nn.Module:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    model = configured_model("num_classes=3", "width_multiplier=0.125")
    model.load_state_dict(state["trainer"]["model"])
    return model


@pytest.mark.slow
def test_cli_run_directory_holds_every_output(image_root, tmp_path):
    result = run_main("resnet_lab.train", "data=image_folder", f"data.root={image_root}", *TINY, "trainer.epochs=2", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.csv", "summary.json", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("best_eval_acc", "wall_time_s", "mean_images_per_s", "device", "torch_version", "git_commit", "num_params"):
        assert key in summary
    assert summary["torch_version"] == torch.__version__ and summary["device"] == "cpu"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["trainer"]["epochs"] == 2
    assert {"model", "optimizer", "scheduler", "train_loader", "torch_rng"} <= set(checkpoint["trainer"])
    estimate = next(line for line in (run / "train.log").read_text().splitlines() if "training on the CPU at" in line)
    assert ("no CUDA" if not torch.cuda.is_available() else "trainer.device=cpu") in estimate and "the whole run (18 steps) takes about" in estimate
    assert [duration(2.4), duration(75), duration(3700)] == ["2 s", "1 min", "1 h 02 min"], "a short run is not rounded up to a minute"


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_metrics(tmp_path):
    root = write_image_folder(tmp_path / "im", train_per_class=64, test_per_class=16)
    args = ["data=image_folder", f"data.root={root}", *TINY, "trainer.epochs=6", "trainer.deterministic=true", "model.dropout=0.2"]
    full = run_main("resnet_lab.train", *args, "hydra.run.dir=full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr

    command = [sys.executable, "-m", "resnet_lab.train", *args, "hydra.run.dir=killed"]
    process = subprocess.Popen(command, cwd=tmp_path, env=BARE_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert checkpoint.exists(), f"no checkpoint within 300 s (exit code {process.poll()})"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_after = load_checkpoint(checkpoint)["epoch"]
    assert killed_after < 6, "the run finished before it could be killed"
    assert len(read_metrics(tmp_path / "killed")) in (killed_after, killed_after + 1)

    resumed = run_main("resnet_lab.train", *args, "trainer.resume=true", "hydra.run.dir=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(tmp_path / "killed") == read_metrics(tmp_path / "full")
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("last.pt")


@pytest.mark.slow
def test_resume_without_a_checkpoint_is_one_clear_line(image_root, tmp_path):
    result = run_main("resnet_lab.train", "data=image_folder", f"data.root={image_root}", *TINY, "trainer.resume=true", "hydra.run.dir=empty", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "trainer.resume=true" in result.stderr and "last.pt" in result.stderr


@pytest.mark.slow
def test_multirun_makes_one_run_directory_per_job(image_root, tmp_path):
    result = run_main(
        "resnet_lab.train",
        "-m",
        "data=image_folder",
        f"data.root={image_root}",
        *TINY,
        "trainer.epochs=1",
        "scheduler.max_lr=0.01,0.05,0.1",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    runs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2"]
    lrs = []
    for run in runs:
        assert (run / "summary.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
        lrs.append(load_checkpoint(run / "checkpoints" / "last.pt")["config"]["scheduler"]["max_lr"])
    assert lrs == [0.01, 0.05, 0.1]


@pytest.mark.slow
def test_two_epochs_on_the_jpeg_copy_learn(jpeg_root, tmp_path):
    """A 1/8-width net on the JPEG slice (5,000 training and 1,000 test images), 2 epochs on CPU.
    Chance is 10%; 30.3% was measured here, so 25% separates "learns" from "does not" with margin."""
    cfg = compose_config(
        [
            "data=image_folder",
            f"data.root={jpeg_root}",
            "model.width_multiplier=0.125",
            "trainer.device=cpu",
            "trainer.progress=false",
            "trainer.epochs=2",
            "data.train_subset=5000",
            "data.test_subset=1000",
            "data.batch_size=128",
            "scheduler.max_lr=0.2",
            "trainer.tta=none",
            "logger=none",
            "explain=none",
        ]
    )
    accuracy = run_training(validate(cfg), JobContext(tmp_path / "run")).objective
    print(f"JPEG-copy CPU test accuracy after 2 epochs: {accuracy:.4f}")
    assert accuracy >= 0.25


def test_without_a_terminal_a_progress_line_comes_at_least_every_30_s_and_the_cpu_estimate_within_20_s(caplog):
    """A clock the test steps by hand: 10 s per training step."""
    now = iter(float(10 * t) for t in range(100))
    progress = ProgressLog(total_steps=20, clock=lambda: next(now))
    with caplog.at_level("INFO", logger="resnet_lab.train.progress"):
        for _ in range(7):
            progress()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["progress: step 3 of 20 (15%), 30 s elapsed, about 3 min left", "progress: step 6 of 20 (30%), 1 min elapsed, about 2 min left"]
    caplog.clear()
    ticks = iter(float(10 * t) for t in range(100))
    estimate = CpuEstimate(total_steps=100, why="no CUDA", clock=lambda: next(ticks))
    with caplog.at_level("WARNING", logger="resnet_lab.train.progress"):
        for _ in range(5):
            estimate()
    assert [r.getMessage() for r in caplog.records] == ["no CUDA: training on the CPU at 10.00 s per step; the whole run (100 steps) takes about 17 min"], (
        "told after 20 s of timed steps, not after the 5 timed steps the fast case waits for"
    )
    for suggest_quick, hint in ((True, ". experiment=quick is sized for a CPU (README: the first run)"), (False, "")):
        caplog.clear()
        clock = iter(float(10 * t) for t in range(100)).__next__
        slow = CpuEstimate(total_steps=1000, why="no CUDA", clock=clock, suggest_quick=suggest_quick)
        with caplog.at_level("WARNING", logger="resnet_lab.train.progress"):
            for _ in range(5):
                slow()
        told = "no CUDA: training on the CPU at 10.00 s per step; the whole run (1000 steps) takes about 2 h 47 min"
        assert [r.getMessage() for r in caplog.records] == [told + hint], "a run that already is the quick recipe is not told to use it"
