"""Faults: signals, kills at random moments, damaged files, racing processes, a killed sweep."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from conftest import BARE_ENV, REPO, TINY, compose_config, run_cli, run_main, write_image_folder
from resnet_lab.config import ConfigError, validate
from resnet_lab.errors import DivergedError, TrainingFailure
from resnet_lab.files import check_writable
from resnet_lab.job import JobContext
from resnet_lab.sweep.liveness import interrupted_reasons
from resnet_lab.train.checkpoint import load_checkpoint
from resnet_lab.train.run import run_training

pytestmark = pytest.mark.slow


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A data set and one uninterrupted reference run that every resume is compared with."""
    root = tmp_path_factory.mktemp("faults")
    write_image_folder(root / "im", train_per_class=64, test_per_class=16)
    args = ["data=image_folder", f"data.root={root / 'im'}", *TINY, "trainer.epochs=5", "trainer.deterministic=true", "model.dropout=0.1"]
    full = run_main("resnet_lab.train", *args, "hydra.run.dir=full", cwd=root)
    assert full.returncode == 0, full.stderr
    return root, args, metrics(root / "full")


# `python -m resnet_lab.train` whose process sends itself `signum` after training step `step`:
# an interrupt at a chosen moment of the run, whatever the machine's speed.
SIGNAL_AT_STEP = """
import os, sys
from resnet_lab.train import loop
from resnet_lab.train.__main__ import main

step, signum = int(sys.argv.pop(1)), int(sys.argv.pop(1))
built = loop.Trainer.__init__
done = [0]

def count_steps(trainer, *args, **kwargs):
    built(trainer, *args, **kwargs)

    def hook():
        done[0] += 1
        if done[0] == step:
            os.kill(os.getpid(), signum)

    trainer.step_hooks.append(hook)

loop.Trainer.__init__ = count_steps
main()
"""


def start(root: Path, args: list[str], run_dir: str, signal_at: tuple[int, int] | None = None) -> subprocess.Popen:
    """The training command as its own process; with `signal_at` (step, signal), interrupted
    by that signal right after that step."""
    program = ["-m", "resnet_lab.train"] if signal_at is None else ["-c", SIGNAL_AT_STEP, *map(str, signal_at)]
    return subprocess.Popen(
        [sys.executable, *program, *args, f"hydra.run.dir={run_dir}"],
        cwd=root,
        env=BARE_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until `path` exists; a process that ends first, or a deadline that passes, fails the test
    here, by name, rather than as a puzzling error further on."""
    deadline = time.time() + timeout
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert path.exists(), f"{path} did not appear (process exit code {process.poll()}, waited up to {timeout:.0f} s)"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_the_step_and_the_printed_command_resumes_to_identical_metrics(workspace, signum):
    root, args, reference = workspace
    name = f"signal-{signum}"
    at_step = 24 * 2 + 7  # 24 steps an epoch: in the middle of epoch 3
    process = start(root, args, name, signal_at=(at_step, signum))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, err
    state = load_checkpoint(root / name / "checkpoints" / "last.pt")
    progress = state["trainer"]["progress"]
    assert state["epoch"] == 2 and (progress["epoch"], progress["next_batch"]) == (3, 7), "saved after the step in flight, mid-epoch"
    command = next(line for line in out.splitlines() if line.startswith("resume: "))[len("resume: ") :]
    assert "trainer.resume=true" in command and f"hydra.run.dir={root / name}" in command
    program, module, *resume_args = command.split()[1:]
    assert (program, module) == ("-m", "resnet_lab.train"), command
    resumed = run_main(module, *resume_args, cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(root / name) == reference


@pytest.mark.parametrize("at_step", [25, 24 * 2 + 13, 24 * 4 - 1], ids=["epoch2-start", "epoch3-middle", "epoch4-end"])
def test_sigkill_at_any_step_then_resume_matches_the_uninterrupted_run(workspace, at_step):
    """Killed at once (no handler runs) right after a chosen step; the last complete checkpoint
    (the end of the epoch before) resumes to the uninterrupted run's metrics."""
    root, args, reference = workspace
    name = f"kill-{at_step}"
    process = start(root, args, name, signal_at=(at_step, signal.SIGKILL))
    process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(root / name / "checkpoints" / "last.pt")["epoch"] == (at_step - 1) // 24
    resumed = run_main("resnet_lab.train", *args, "trainer.resume=true", f"hydra.run.dir={name}", cwd=root)
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(root / name) == reference


def test_damaged_checkpoint_is_named_and_best_is_used_only_when_asked(workspace):
    root, args, reference = workspace
    first = run_main("resnet_lab.train", *args, "hydra.run.dir=damaged", cwd=root)
    assert first.returncode == 0, first.stderr
    last = root / "damaged" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    refused = run_main("resnet_lab.train", *args, "trainer.resume=true", "hydra.run.dir=damaged", cwd=root)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert str(last) in refused.stderr and "resume_fallback_best" in refused.stderr
    fallback = run_main("resnet_lab.train", *args, "trainer.resume=true", "trainer.resume_fallback_best=true", "hydra.run.dir=damaged", cwd=root)
    assert fallback.returncode == 0, fallback.stderr
    assert json.loads((root / "damaged" / "summary.json").read_text())["resumed_from"].endswith("best.pt")
    assert metrics(root / "damaged") == reference
    changed = run_main("resnet_lab.train", *args, "trainer.epochs=7", "trainer.resume=true", "hydra.run.dir=damaged", cwd=root)
    assert changed.returncode == 2 and "trainer.epochs" in changed.stderr and changed.stderr.count("\n") == 1


def test_two_processes_preparing_the_same_cache_do_not_corrupt_it(tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=200, test_per_class=20)
    script = (
        "import sys, torch; from pathlib import Path; from tests.conftest import compose_config; "
        "from resnet_lab.config import validate; from resnet_lab.data import load_splits; "
        f"cfg = validate(compose_config(['data=image_folder', 'data.root={tmp_path / 'im'}'])).data; "
        f"s = load_splits(cfg, Path('{tmp_path / 'im'}')); print(int(s.train_images.sum()))"
    )
    racers = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=300) for r in racers]
    assert all(r.returncode == 0 for r in racers), outputs
    assert outputs[0][0] == outputs[1][0]
    for path in (tmp_path / "im" / ".resnet_lab_cache").glob("*.pt"):
        entry = torch.load(path, weights_only=True)
        assert entry["images"].dtype == torch.uint8
    assert not list((tmp_path / "im" / ".resnet_lab_cache").glob(".*.tmp"))


def test_diverging_loss_names_the_step_and_the_lr(image_root, tmp_path):
    cfg = compose_config(["data=image_folder", f"data.root={image_root}", *TINY, "scheduler=constant", "scheduler.max_lr=1e6", "trainer.epochs=1"])
    with pytest.raises(DivergedError, match=r"nan/inf at step \d+ of epoch 1 \(lr 1e\+06\); lower scheduler.max_lr") as caught:
        run_training(validate(cfg), JobContext(tmp_path / "run"))
    assert isinstance(caught.value, TrainingFailure) and not isinstance(caught.value, ConfigError), "a training failure, not a bad setting"


@pytest.mark.slow
def test_each_kind_of_failure_exits_with_its_own_code(image_root, tmp_path):
    """A bad setting exits 2 before any work; a run that started and diverged exits 3 with its
    one line, keeping what it wrote (the run folder with its log). Real processes: the exit
    status is what a shell or a scheduler sees."""
    base = ["data=image_folder", f"data.root={image_root}", *TINY, "trainer.epochs=1"]
    diverged = run_cli("resnet_lab.train", *base, "scheduler=constant", "scheduler.max_lr=1e6", "hydra.run.dir=diverged", cwd=tmp_path)
    assert diverged.returncode == 3 and diverged.stderr.count("\n") == 1 and "nan/inf" in diverged.stderr, diverged.stderr
    assert (tmp_path / "diverged" / ".hydra").is_dir()
    refused = run_cli("resnet_lab.train", *base, "trainer.epochs=0", "hydra.run.dir=refused", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and not (tmp_path / "refused").exists(), refused.stderr


def test_output_space_is_checked_before_training(tmp_path):
    check_writable(tmp_path / "out", 1)
    with pytest.raises(ConfigError, match="MiB free in"):
        check_writable(tmp_path / "out", 1 << 60)


@pytest.fixture
def small_disk(tmp_path):
    """A real 12 MiB file system (tmpfs), so that a disk really fills up mid-run."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return ballast


def test_a_full_disk_names_the_file_and_the_resume_command_that_finishes_the_run(small_disk, tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    args = ["data=image_folder", f"data.root={tmp_path / 'im'}", *TINY, "trainer.epochs=6"]
    run_dir = small_disk / "run"
    process = start(tmp_path, args, str(run_dir))
    wait_for(run_dir / "checkpoints" / "last.pt", process)
    ballast = fill(small_disk)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: no space left on the device while writing {run_dir}/") and "the last complete checkpoint is intact" in line
    command = line.split("resume with: ", 1)[1]
    assert command.endswith(f"trainer.resume=true hydra.run.dir={run_dir}")
    ballast.unlink()
    resumed = subprocess.run([sys.executable, "-m", *command.split()[2:]], cwd=tmp_path, env=BARE_ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 6


def test_a_resume_counts_the_space_of_the_checkpoints_it_replaces_and_a_refused_start_leaves_nothing(small_disk, tmp_path):
    """Free space between the run's whole footprint and that footprint less its own checkpoints:
    resuming the run fits (its last.pt and best.pt are replaced, not added to), a new run does
    not, and its refusal takes its folder away again."""
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    args = ["data=image_folder", f"data.root={tmp_path / 'im'}", *TINY, "trainer.epochs=1"]
    run_dir = small_disk / "run"
    assert run_main("resnet_lab.train", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    num_params = json.loads((run_dir / "summary.json").read_text())["num_params"]
    footprint = 3 * 3 * 4 * num_params + 2**20  # train/checkpoint.py: run_footprint_bytes, fp32 weights, no tracker, no gallery
    replaced = sum((run_dir / "checkpoints" / name).stat().st_size for name in ("last.pt", "best.pt"))
    ballast = fill(small_disk)
    target_free = footprint - replaced // 2
    os.truncate(ballast, ballast.stat().st_size - (target_free - shutil.disk_usage(small_disk).free))
    assert footprint - replaced < shutil.disk_usage(small_disk).free < footprint
    fresh = run_main("resnet_lab.train", *args, f"hydra.run.dir={small_disk / 'fresh'}", cwd=tmp_path)
    assert fresh.returncode == 2 and "MiB free in" in fresh.stderr, fresh.stderr
    assert not (small_disk / "fresh").exists()
    resumed = run_main("resnet_lab.train", *args, "trainer.resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_killed_sweep_keeps_finished_trials_and_replaces_the_interrupted_one(tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=8)
    command = [
        sys.executable,
        "-m",
        "resnet_lab.train",
        "-m",
        "hparams_search=optuna",
        "data=image_folder",
        f"data.root={tmp_path / 'im'}",
        *TINY,
        "trainer.epochs=4",
        "hparams_search.max_lr_bounds=[0.01,0.1]",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.storage=sqlite:///study.db",
        "hparams_search.pruner.kind=none",  # every trial trains to the end: the test counts the complete ones
    ]
    env = BARE_ENV
    process = subprocess.Popen([*command, "hydra.sweep.dir=first"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(tmp_path / "first" / "1" / "checkpoints" / "last.pt", process)
    process.kill()
    process.wait()
    again = run_main(*command[2:], "hydra.sweep.dir=second", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="resnet_lab", storage=f"sqlite:///{tmp_path / 'study.db'}")
    interrupted = dict(interrupted_reasons(study))
    states = [(t.number, t.state.name, t.number in interrupted) for t in study.trials]
    assert states[0] == (0, "COMPLETE", False) and states[1] == (1, "FAIL", True)
    assert [s for s in states if s[1] == "COMPLETE"] == [(0, "COMPLETE", False), (2, "COMPLETE", False), (3, "COMPLETE", False)]
    assert interrupted[1].startswith("interrupted: its sweep process")
    assert study.trials[0].user_attrs["run_dir"].endswith("first/0")


def test_a_pruned_trial_crosses_a_process_boundary_intact():
    """Jobs of the joblib, submitit and Ray launchers hand their result back pickled: a pruned
    trial's result must still be recognised as pruned, with its epoch, on the sweep's side."""
    import pickle

    from resnet_lab.trial import Pruned

    back = pickle.loads(pickle.dumps(Pruned(3, 0.4125)))
    assert isinstance(back, Pruned) and (back.epoch, back.value) == (3, 0.4125)
