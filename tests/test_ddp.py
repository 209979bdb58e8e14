"""trainer.strategy=ddp under torchrun: two CPU processes with the gloo backend."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY, run_main

# The real-data comparison: a 1/8-width net on 2,500 training and the 1,000 test images of the JPEG
# slice (conftest.JPEG_SLICE), 3 epochs at a global batch of 128, evaluated once at the end without
# TTA (the comparison needs only the final accuracy). Chance is 10%.
REAL = [
    "model.width_multiplier=0.125",
    "trainer.device=cpu",
    "trainer.progress=false",
    "data.train_subset=2500",
    "data.test_subset=1000",
    "data.batch_size=128",
    "data.eval_batch_size=250",
    "scheduler.max_lr=0.2",
    "trainer.epochs=3",
    "trainer.eval_every=0",
    "trainer.tta=none",
    "explain=none",
]
# One process and two see the same batches and augmentations; they differ in BatchNorm statistics
# (per rank: 64 images, not 128) and summation order. Measured on CPU: see the issue note.
TOLERANCE = 0.05


def torchrun(*args: str, cwd: Path, nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "resnet_lab.train", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs").glob("*/*") if p.is_dir())


@pytest.mark.slow
def test_two_ranks_write_one_run_and_match_one_process(jpeg_root, tmp_path):
    data = ["data=image_folder", f"data.root={jpeg_root}"]
    (tmp_path / "ddp").mkdir()
    (tmp_path / "single").mkdir()
    ddp = torchrun(*data, *REAL, "trainer.strategy=ddp", "logger=wandb", cwd=tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_main("resnet_lab.train", *data, *REAL, "logger=none", cwd=tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]

    dirs = run_dirs(tmp_path / "ddp")
    assert len(dirs) == 1, f"one run directory for both ranks, found {dirs}"
    run = dirs[0]
    assert len(list(run.glob("wandb/offline-run-*"))) == 1 and not (tmp_path / "ddp" / "wandb").exists()
    assert {p.name for p in (run / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert (run / "checkpoints" / "last.pt").is_file()
    log = (run / "train.log").read_text()
    assert log.count("epoch 3/3") == 1, "rank 1 does not write into rank 0's log"

    summary = json.loads((run / "summary.json").read_text())
    reference = json.loads(next((tmp_path / "single" / "outputs").glob("*/*/summary.json")).read_text())
    assert summary["strategy"] == "ddp" and summary["world_size"] == 2 and reference["world_size"] == 1
    ddp_acc, single_acc = summary["final"]["eval_acc"], reference["final"]["eval_acc"]
    print(f"JPEG copy, 3 epochs: ddp (2 ranks) {ddp_acc:.4f}, one process {single_acc:.4f}")
    assert ddp_acc >= 0.2 and single_acc >= 0.2, "both learn (chance is 10%; 26.0% and 26.6% measured on CPU)"
    assert abs(ddp_acc - single_acc) <= TOLERANCE


@pytest.mark.slow
def test_a_ddp_run_resumes_from_rank_zeros_checkpoint(image_root, tmp_path):
    first = torchrun(f"data.root={image_root}", "data=image_folder", *TINY, "trainer.strategy=ddp", "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun(
        f"data.root={image_root}",
        "data=image_folder",
        *TINY,
        "trainer.strategy=ddp",
        "trainer.epochs=1",
        "trainer.resume=true",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize(
    ("launch", "args", "message"),
    [
        ("python", ["trainer.strategy=ddp"], "trainer.strategy='ddp' needs torchrun"),
        ("torchrun", [], "torchrun started 2 processes but trainer.strategy='single'"),
        ("torchrun", ["-m", "trainer.strategy=ddp"], "-m/--multirun is not allowed under torchrun"),
    ],
)
def test_a_strategy_that_does_not_match_the_launch_is_one_line(image_root, tmp_path, launch, args, message):
    base = ["data=image_folder", f"data.root={image_root}", *TINY]
    result = run_main("resnet_lab.train", *base, *args, cwd=tmp_path) if launch == "python" else torchrun(*base, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("summary.json"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 7}, "data.batch_size=7 is not allowed with 2 ddp processes"),
        ({"eval_batch_size": 9}, "data.eval_batch_size=9 is not allowed with 2 ddp processes"),
        ({"drop_last": False}, "data.drop_last=false is not allowed with trainer.strategy=ddp"),
        ({"auto_lr": True}, "scheduler.max_lr=auto is not allowed with trainer.strategy=ddp"),
    ],
)
def test_ddp_settings_that_cannot_shard_are_refused_under_torchrun(monkeypatch, settings, message):
    """The same check the torchrun cases above reach, in the environment torchrun gives rank 0
    of two processes (the exit code and the one line are theirs)."""
    from resnet_lab.config.schema import Strategy
    from resnet_lab.errors import ConfigError
    from resnet_lab.train.distributed import check_strategy

    for key, value in {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    fine = {"batch_size": 8, "eval_batch_size": 64, "drop_last": True, "auto_lr": False}
    assert check_strategy(Strategy.ddp, **fine).size == 2
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_strategy(Strategy.ddp, **{**fine, **settings})
