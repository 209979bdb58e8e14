"""A finished run is never overwritten, a folder is held by one process, system and foreign
folders are refused: each before a single file is written."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import REPO, TINY, run_cli, run_main, write_image_folder
from resnet_lab.files import atomic_write
from resnet_lab.run_folder import LOCK_FILE, hold, release

pytestmark = pytest.mark.slow


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file below `folder` (the lock file aside) by its md5."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def test_a_new_run_into_a_finished_runs_folder_is_refused_and_changes_nothing(finished_run):
    root, args, run = finished_run
    before = fingerprint(run)
    refused = run_main("resnet_lab.train", *args, "trainer.seed=7", f"hydra.run.dir={run}", cwd=root)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "holds a finished run" in refused.stderr and "trainer.resume=true" in refused.stderr and "trainer.overwrite=true" in refused.stderr
    assert fingerprint(run) == before


def test_overwrite_replaces_a_finished_run_only_when_asked(tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=4)
    args = ["data=image_folder", f"data.root={tmp_path / 'im'}", *TINY, "trainer.epochs=1"]
    assert run_main("resnet_lab.train", *args, "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    (tmp_path / "run" / "checkpoints" / "old.pt").write_bytes(b"stale")
    replaced = run_main("resnet_lab.train", *args, "trainer.seed=3", "trainer.overwrite=true", "hydra.run.dir=run", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert not (tmp_path / "run" / "checkpoints" / "old.pt").exists()  # nothing of the replaced run is left to mistake for the new one's
    assert "trainer.seed=3" in (tmp_path / "run" / ".hydra" / "overrides.yaml").read_text()
    both = run_main("resnet_lab.train", *args, "trainer.overwrite=true", "trainer.resume=true", "hydra.run.dir=run", cwd=tmp_path)
    assert both.returncode == 2 and "trainer.overwrite" in both.stderr, both.stderr


def test_reproduce_never_writes_into_the_run_it_reproduces(finished_run):
    root, _, run = finished_run
    before = fingerprint(run)
    refused = run_main("resnet_lab.reproduce", str(run), f"hydra.run.dir={run}", "trainer.seed=9", cwd=root)
    assert refused.returncode == 2 and "is the run being reproduced" in refused.stderr, refused.stderr
    assert fingerprint(run) == before


def test_reproduce_reads_the_original_before_it_trains_and_refuses_a_damaged_summary(finished_run, tmp_path):
    _, args, run = finished_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run), str(copy)], check=True)
    (copy / "summary.json").write_text("{not json")
    refused = run_main("resnet_lab.reproduce", str(copy), "hydra.run.dir=rerun", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "summary.json is damaged" in refused.stderr, refused.stderr
    assert not (tmp_path / "rerun").exists()  # refused before training


def test_a_run_folder_is_held_by_one_process_and_a_second_is_refused_with_the_holders_pid(finished_run):
    root, args, run = finished_run
    hold(run)
    try:
        second = run_cli("resnet_lab.train", *args, "trainer.resume=true", f"hydra.run.dir={run}", cwd=root)
    finally:
        release(run)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert f"in use by another process (pid {os.getpid()})" in second.stderr


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from resnet_lab.run_folder import hold; hold(__import__('pathlib').Path({str(folder)!r})); print('held', flush=True); input()",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        hold(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    hold(folder)  # the kernel dropped the dead process's lock
    release(folder)


@pytest.mark.parametrize("where", ["/", "/etc", "/proc/resnet_lab_run"])
def test_system_folders_are_refused_for_runs_and_sweeps_writing_nothing(finished_run, where):
    root, args, _ = finished_run
    before = sorted(os.listdir(where)) if os.path.isdir(where) else None
    run = run_cli("resnet_lab.train", *args, f"hydra.run.dir={where}", cwd=root)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "choose a folder of your own" in run.stderr, run.stderr
    sweep = run_cli("resnet_lab.train", "-m", *args, "trainer.seed=1,2", f"hydra.sweep.dir={where}", cwd=root)
    assert sweep.returncode == 2 and sweep.stderr.count("\n") == 1 and "choose a folder of your own" in sweep.stderr, sweep.stderr
    assert (sorted(os.listdir(where)) if os.path.isdir(where) else None) == before


def test_a_folder_of_unrelated_files_is_refused_for_a_run_and_a_sweep(finished_run, tmp_path):
    root, args, _ = finished_run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    for mode, key in (([], "hydra.run.dir"), (["-m", "trainer.seed=1,2"], "hydra.sweep.dir")):
        refused = run_main("resnet_lab.train", *mode, *args, f"{key}={tmp_path / 'mine'}", cwd=root)
        assert refused.returncode == 2 and "already holds files that are not" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]


def test_a_grid_multirun_into_an_earlier_multiruns_folder_is_refused(finished_run, tmp_path):
    root, args, _ = finished_run
    first = run_main("resnet_lab.train", "-m", *args, "trainer.seed=1", f"hydra.sweep.dir={tmp_path / 'grid'}", cwd=root)
    assert first.returncode == 0, first.stderr
    before = fingerprint(tmp_path / "grid")
    again = run_main("resnet_lab.train", "-m", *args, "trainer.seed=2", f"hydra.sweep.dir={tmp_path / 'grid'}", cwd=root)
    assert again.returncode == 2 and "holds an earlier multirun" in again.stderr, again.stderr
    assert fingerprint(tmp_path / "grid") == before


def test_a_sweep_folder_of_another_study_is_refused_and_a_trial_folder_is_never_reused(finished_run, tmp_path):
    root, args, _ = finished_run
    sweep, db = tmp_path / "sweep", tmp_path / "a.db"
    settings = [*args, "hparams_search=optuna", "hparams_search.max_lr_bounds=[0.01,0.1]", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]
    first = run_main("resnet_lab.train", "-m", *settings, f"hydra.sweeper.storage=sqlite:///{db}", cwd=root)
    assert first.returncode == 0, first.stderr
    before = fingerprint(sweep)
    for extra, needle in (
        (["hydra.sweeper.study_name=other", f"hydra.sweeper.storage=sqlite:///{db}"], "holds the trials of study 'resnet_lab'"),
        ([f"hydra.sweeper.storage=sqlite:///{tmp_path / 'b.db'}"], f"stored in sqlite:///{db}"),
        (["hydra.sweeper.storage=null"], f"stored in sqlite:///{db}"),
    ):
        refused = run_main("resnet_lab.train", "-m", *settings, *extra, cwd=root)
        assert refused.returncode == 2 and needle in refused.stderr, refused.stderr
    assert fingerprint(sweep) == before
    # The study deleted from its database and started again: its trial 0 would land in trial 0's folder.
    optuna.delete_study(study_name="resnet_lab", storage=f"sqlite:///{db}")
    again = run_main("resnet_lab.train", "-m", *settings, f"hydra.sweeper.storage=sqlite:///{db}", cwd=root)
    assert again.returncode == 2 and "trial 0's folder" in again.stderr, again.stderr
    assert fingerprint(sweep / "0") == {k.removeprefix("0/"): v for k, v in before.items() if k.startswith("0/")}


@pytest.mark.parametrize("command", ["resnet_lab.evaluate", "resnet_lab.predict", "resnet_lab.explain"])
def test_an_output_folder_that_is_a_file_a_system_folder_or_not_empty_is_refused(finished_run, tmp_path, command):
    root, _, run = finished_run
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    images = [str(root / "im" / "test" / "ant")] if command != "resnet_lab.evaluate" else []
    for out, why in ((tmp_path / "a_file", "is a file"), (Path("/proc/resnet_lab_out"), "system folder"), (tmp_path / "full", "already holds files")):
        refused = run_main(command, str(run), *images, "--out", str(out), cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and why in refused.stderr, refused.stderr
    assert (tmp_path / "a_file").read_text() == "x" and [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomically_written_files_get_the_umasks_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f.json", "w") as handle:
            handle.write("{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~umask
