"""Inputs a user gives on purpose or by mistake: nothing blocks, nothing runs away, every refusal
is one line with exit 2 and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from PIL import Image

from conftest import class_images, run_cli, run_main
from resnet_lab.errors import ConfigError
from resnet_lab.study_storage import open_storage
from resnet_lab.sweep.optuna_sweeper import study_is_complete
from resnet_lab.sweep.workers import SweepWorkerFailed, Worker, run_workers

pytestmark = pytest.mark.slow


def image_files(folder: Path, count: int, names: list[str] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, pixels in enumerate(class_images(0, count, seed=5)):
        path = folder / (names[index] if names else f"{index:03d}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("command", ["resnet_lab.predict", "resnet_lab.explain"])
def test_a_fifo_among_the_images_is_skipped_by_name_and_never_opened(finished_run, tmp_path, command):
    _, _, run = finished_run
    image_files(tmp_path / "pics", 2)
    os.mkfifo(tmp_path / "pics" / "pipe.png")
    done = run_cli(command, str(run), str(tmp_path / "pics"), "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"skipped (not a regular file): {tmp_path / 'pics' / 'pipe.png'}" in done.stderr
    given = run_cli(command, str(run), str(tmp_path / "pics" / "pipe.png"), "--out", str(tmp_path / "out2"), cwd=tmp_path, timeout=120)
    assert given.returncode == 2 and "is not a regular file" in given.stderr and not (tmp_path / "out2").exists(), given.stderr


def test_explain_takes_paths_with_equals_signs_keeps_same_named_files_apart_and_bounds_its_sheet(finished_run, tmp_path):
    _, _, run = finished_run
    from resnet_lab.explain.__main__ import SHEET_IMAGES

    image_files(tmp_path / "a", 1, ["x.png"])
    image_files(tmp_path / "b", 1, ["x.png"])
    image_files(tmp_path / "c", 1, ["lr=0.1.png"])
    image_files(tmp_path / "many", SHEET_IMAGES + 2)
    done = run_main(
        "resnet_lab.explain", str(run), str(tmp_path / "a" / "x.png"), str(tmp_path / "b"), str(tmp_path / "c" / "lr=0.1.png"), "--out", "out", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a__x_gradcam.png", "b__x_gradcam.png", "c__lr=0.1_gradcam.png", "gradcam_sheet.png"]
    many = run_main("resnet_lab.explain", str(run), str(tmp_path / "many"), "--out", "many_out", cwd=tmp_path)
    assert many.returncode == 0, many.stderr
    assert len(list((tmp_path / "many_out").glob("*_gradcam.png"))) == SHEET_IMAGES + 2
    assert f"shows the first {SHEET_IMAGES} of {SHEET_IMAGES + 2} images" in many.stdout
    with Image.open(tmp_path / "many_out" / "gradcam_sheet.png") as sheet:
        assert sheet.height < 4000  # PIL and any viewer open it


def test_predict_caps_top_k_at_the_number_of_classes(finished_run, tmp_path):
    _, _, run = finished_run
    image_files(tmp_path / "pics", 1)
    done = run_main("resnet_lab.predict", str(run), str(tmp_path / "pics"), "--top", "1000000000", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[0]
    assert header == "file,class_1,probability_1,class_2,probability_2,class_3,probability_3"


@pytest.mark.parametrize(
    "override, needle",
    [
        ("scheduler.max_lr=inf", "scheduler.max_lr=inf is not allowed: a finite number"),
        ("trainer.epochs=100000000000000000000", "trainer.epochs"),
        ("trainer.epochs=20000", "<= 10000"),
        ("augmentation.cutout_size=40", "augmentation.cutout_size=40 is not allowed"),
        ("hparams_search=optuna", "runs with -m"),
    ],
)
def test_settings_that_passed_by_accident_are_refused_in_one_line(finished_run, tmp_path, override, needle):
    root, args, _ = finished_run
    refused = run_main("resnet_lab.train", *args, "augmentation=cutout", override, "hydra.run.dir=run", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and needle in refused.stderr, refused.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override, needle",
    [
        ("hparams_search.workers=0", "hparams_search.workers=0"),
        ("hydra.sweeper.storage=nosuchdb://x", "cannot be opened"),
        ("hparams_search.objectives=[]", "hparams_search.objectives"),
        ("hparams_search.max_lr_bounds=[0.5,0.1]", "max_lr_bounds"),
        ("hparams_search.lr_window=[300,6]", "hparams_search.lr_window=[300.0, 6.0] is not allowed: null (the optimizer's own) or [low, high] multiples"),
        ("optimizer.lr_window=[6]", "optimizer.lr_window=[6.0] is not allowed: [low, high] multiples of the LR-finder suggestion"),
        ("optimizer.weight_decay_window=[1e-3,1e-5]", "optimizer.weight_decay_window=[0.001, 1e-05] is not allowed: [low, high] with 0 < low < high"),
        ("hparams_search.workers=100000", "more than this machine runs at once"),
        ("hydra.sweeper.storage=sqlite:////proc/resnet_lab.db", "cannot be opened"),
    ],
)
def test_a_refused_sweep_says_one_line_and_leaves_nothing(finished_run, tmp_path, override, needle):
    _, args, _ = finished_run
    refused = run_main("resnet_lab.train", "-m", *args, "hparams_search=optuna", override, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and needle in refused.stderr, refused.stderr
    assert "sweep report" not in refused.stdout + refused.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_database_is_reported_at_once_with_its_password_masked():
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot be opened") as refused:
        open_storage("postgresql://user:hunter2@127.0.0.1:1/study")
    assert "hunter2" not in str(refused.value) and "***" in str(refused.value)
    assert time.perf_counter() - started < 5  # refused at once: the old retries slept 9 s


def test_a_password_in_an_override_hydra_cannot_parse_is_masked(finished_run, tmp_path):
    _, args, _ = finished_run
    refused = run_main("resnet_lab.train", "-m", *args, "hparams_search=optuna", "hydra.sweeper.storage=postgresql://u@h/db?password=hunter2", cwd=tmp_path)
    assert refused.returncode == 2 and "hunter2" not in refused.stderr + refused.stdout and "password=***" in refused.stderr, refused.stderr


def test_a_study_that_reached_its_total_is_a_success_even_if_a_worker_was_lost():
    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert not study_is_complete(study, 4)
    study.add_trial(optuna.trial.create_trial(value=0.4))
    assert study_is_complete(study, 4)


def test_workers_die_with_the_sweep_process_that_started_them(tmp_path):
    """The parent runs one worker that would sleep for ten minutes, and is killed -9: the kernel
    stops the worker at once (no orphan keeps running its trial)."""
    child_pid = tmp_path / "child.pid"
    worker_code = f"import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    parent_code = (
        "from pathlib import Path; import sys\n"
        "from resnet_lab.sweep.workers import Worker, run_workers\n"
        f"run_workers([Worker(0, [sys.executable, '-c', {worker_code!r}], {{'OMP_NUM_THREADS': '1'}}, Path({str(tmp_path / 'w.log')!r}))])\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 60
    while not (child_pid.is_file() and child_pid.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert child_pid.is_file() and child_pid.read_text(), "the worker did not start within 60 s"
    worker = int(child_pid.read_text())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and _state(worker) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{worker}").exists() or _state(worker) == "Z", "the worker outlived its sweep process"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_lost_worker_is_reported_with_its_exit_code(tmp_path):
    worker = Worker(0, [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], dict(os.environ), tmp_path / "w.log")
    with pytest.raises(SweepWorkerFailed, match="exited with code -9"):
        run_workers([worker])
