"""The wheel is a whole product: built from the repository, installed into a fresh virtualenv and
run from a directory outside the repository, it composes its own configs, trains, and takes a
user's config directory (--config-dir) with an experiment of the user's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, TINY, write_image_folder

SOURCES = ("conf", "resnet_lab", "benchmarks", "setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Python of a fresh virtualenv holding only the wheel; the dependencies (torch & co., which
    a user gets from the index) are seen through a path file, as this machine may be offline."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    for name in SOURCES:
        path = REPO / name
        copy = shutil.copytree if path.is_dir() else shutil.copy2
        copy(path, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if path.is_dir() else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)], check=True, cwd=root)
    wheel = next((root / "dist").glob("resnet_lab-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], check=True)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "offline"}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_installed_wheel_composes_trains_and_takes_a_users_config_dir(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(installed, "-c", "import resnet_lab; print(resnet_lab.CONF_DIR)", cwd=elsewhere)
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout, where.stdout + where.stderr

    job = run(installed, "-m", "resnet_lab.train", "--cfg", "job", cwd=elsewhere)
    assert job.returncode == 0 and "max_lr: 0.4" in job.stdout, job.stderr
    summary = run(installed, "-m", "resnet_lab.summary", cwd=elsewhere)
    assert summary.returncode == 0 and "Total params: 6,573,130" in summary.stdout, summary.stderr

    user_conf = tmp_path / "my_conf"
    (user_conf / "experiment").mkdir(parents=True)
    # A user's recipe for batch 8 (the tiny test size): SGD's own peak LR is meant for batch 512.
    (user_conf / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 3\n  label_smoothing: 0.1\nscheduler:\n  max_lr: 0.05\n")
    images = write_image_folder(tmp_path / "images")
    trained = run(
        installed,
        "-m",
        "resnet_lab.train",
        "--config-dir",
        str(user_conf),
        "experiment=mine",
        "data=image_folder",
        f"data.root={images}",
        *TINY,
        "hydra.run.dir=run",
        cwd=elsewhere,
    )
    assert trained.returncode == 0, trained.stderr
    result = json.loads((elsewhere / "run" / "summary.json").read_text())
    saved = OmegaConf.load(elsewhere / "run" / ".hydra" / "config.yaml")
    assert saved.trainer.label_smoothing == 0.1 and saved.scheduler.max_lr == 0.05 and result["epochs"] == 3
    assert result["final"]["eval_acc"] >= 0.6, "learns the synthetic classes (chance is 1/3)"
