"""Checkpoints are shared (run directories, W&B artifacts, bug reports): reading one never runs
code from it, and a refused resume leaves no W&B run or output behind."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

import pytest
import torch

from conftest import TINY, run_main, write_image_folder
from resnet_lab.config.schema import HeadPool
from resnet_lab.train.checkpoint import UnsafeCheckpointError, load_checkpoint


class RunsAShellCommand:
    """What an attacker pickles: unpickling calls os.system with a command of their choosing."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_run(root: Path) -> tuple[Path, Path]:
    """A run directory whose checkpoints/last.pt would create `marker` if it were unpickled."""
    marker = root / "code-ran"
    checkpoint = root / "shared-run" / "checkpoints" / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"trainer": RunsAShellCommand(marker), "epoch": 1, "config": {}}, checkpoint)
    return checkpoint.parent.parent, marker


def test_loading_a_crafted_checkpoint_runs_nothing(tmp_path):
    run_dir, marker = crafted_run(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*last\.pt: it holds posix\.system"):
        load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert not marker.exists()


def test_a_checkpoint_of_an_older_resnet_lab_with_enum_members_loads_as_plain_values(tmp_path):
    """Checkpoints used to carry the config's enum members; they load without unpickling
    anything but those members, and read back as the names today's checkpoints store."""
    path = tmp_path / "old.pt"
    torch.save({"trainer": {"model": {"w": torch.ones(2)}}, "epoch": 3, "config": {"model": {"head_pool": HeadPool.avg}}}, path)
    state = load_checkpoint(path)
    assert state["config"]["model"]["head_pool"] == "avg" and not isinstance(state["config"]["model"]["head_pool"], Enum)
    assert torch.equal(state["trainer"]["model"]["w"], torch.ones(2))


@pytest.mark.slow
def test_reproduce_and_resume_refuse_a_crafted_checkpoint_in_one_line(tmp_path):
    run_dir, marker = crafted_run(tmp_path)
    reproduced = run_main("resnet_lab.reproduce", str(run_dir), cwd=tmp_path)
    assert reproduced.returncode == 2 and reproduced.stderr.count("\n") == 1, reproduced.stderr
    assert reproduced.stderr.startswith("error: refused to load") and "could run code" in reproduced.stderr
    write_image_folder(tmp_path / "im", train_per_class=8, test_per_class=4)
    resumed = run_main(
        "resnet_lab.train",
        "data=image_folder",
        f"data.root={tmp_path / 'im'}",
        *TINY,
        "logger=wandb",
        f"resume_from={run_dir}",
        "hydra.run.dir=resumed",
        cwd=tmp_path,
    )
    assert resumed.returncode == 2 and resumed.stderr.startswith("error: refused to load"), resumed.stderr
    assert not marker.exists(), "the pickled shell command ran"
    assert not (tmp_path / "resumed" / "wandb").exists()


@pytest.mark.slow
def test_a_refused_resume_leaves_no_wandb_run_and_no_outputs(tmp_path):
    write_image_folder(tmp_path / "im", train_per_class=16, test_per_class=4)
    args = ["data=image_folder", f"data.root={tmp_path / 'im'}", *TINY]
    first = run_main("resnet_lab.train", *args, "trainer.epochs=2", "hydra.run.dir=first", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    other = run_main("resnet_lab.train", *args, "trainer.epochs=3", "logger=wandb", f"resume_from={tmp_path / 'first'}", "hydra.run.dir=other", cwd=tmp_path)
    assert other.returncode == 2 and "cannot resume" in other.stderr and "trainer.epochs" in other.stderr, other.stderr
    assert not (tmp_path / "other").exists(), "a refused run leaves no folder"
