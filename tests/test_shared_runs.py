"""A run folder or checkpoint someone else wrote: it never pulls values from the reader's
environment, never names code to run, never picks the reader's output paths, and a crafted or
damaged file is refused in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_main
from resnet_lab.errors import DataError
from resnet_lab.saved_run import checked_shared_config, load_saved_config, overrides_for
from resnet_lab.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-planted-4711"


def copy_run(run: Path, to: Path) -> Path:
    subprocess.run(["cp", "-r", str(run), str(to)], check=True)
    return to


def files_holding(folder: Path, text: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_an_interpolation_in_a_shared_runs_config_is_refused_and_the_secret_is_written_nowhere(finished_run, tmp_path):
    root, _, run = finished_run
    shared = copy_run(run, tmp_path / "received")
    config = yaml.safe_load((shared / ".hydra" / "config.yaml").read_text())
    config["trainer"]["label_smoothing"] = "${oc.env:PLANTED_TOKEN}"
    (shared / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    for command, extra in (
        ("resnet_lab.reproduce", ["hydra.run.dir=rerun"]),
        ("resnet_lab.evaluate", ["--out", "evaluated"]),
        ("resnet_lab.predict", [str(root / "im" / "test" / "ant"), "--out", "labelled"]),
        ("resnet_lab.explain", ["--out", "explained"]),
    ):
        refused = run_main(command, str(shared), *extra, cwd=tmp_path, env={"PLANTED_TOKEN": SECRET})
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "trainer.label_smoothing" in refused.stderr and "interpolation" in refused.stderr, refused.stderr
        assert SECRET not in refused.stdout + refused.stderr
    assert files_holding(tmp_path, SECRET) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["received"]


def test_a_checkpoints_config_cannot_pull_a_secret_either(finished_run, tmp_path):
    _, _, run = finished_run
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["trainer"]["label_smoothing"] = "${oc.env:PLANTED_TOKEN}"
    (tmp_path / "artifact").mkdir()
    torch.save(state, tmp_path / "artifact" / "best.pt")  # a W&B model artifact folder holds its checkpoint loose
    refused = run_main("resnet_lab.reproduce", str(tmp_path / "artifact"), "hydra.run.dir=rerun", cwd=tmp_path, env={"PLANTED_TOKEN": SECRET})
    assert refused.returncode == 2 and "trainer.label_smoothing" in refused.stderr, refused.stderr
    assert files_holding(tmp_path, SECRET) == [] and not (tmp_path / "rerun").exists()


def test_the_projects_own_default_interpolation_is_left_to_the_readers_config():
    saved = {"logger": {"kind": "wandb", "mode": "${oc.env:WANDB_MODE,offline}", "project": "p"}}
    kept, _ = checked_shared_config(saved, None, "test")
    assert "mode" not in kept["logger"] and kept["logger"]["project"] == "p"


def test_output_paths_and_resume_settings_of_a_shared_config_are_the_readers_choice(finished_run):
    _, _, run = finished_run
    config = load_checkpoint(run / "checkpoints" / "last.pt")["config"]
    config["data"]["cache_dir"] = "/somewhere/the/author/chose"
    config["trainer"]["resume"] = True
    replayed = overrides_for(config, None)
    assert not any(o.startswith(("data.cache_dir=", "trainer.resume=", "trainer.overwrite=")) for o in replayed)
    assert any(o.startswith("trainer.epochs=") for o in replayed)


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c, h: c["model"].update(_target_="os.system"), "allow-list"),
        (lambda c, h: h["hydra"]["runtime"]["choices"].update(model=".."), "is not an option of model"),
    ],
    ids=["target os.system", "choice '..'"],
)
def test_code_outside_the_allow_list_and_unknown_group_choices_are_refused(finished_run, tmp_path, change, needle):
    _, _, run = finished_run
    shared = copy_run(run, tmp_path / "received")
    config = yaml.safe_load((shared / ".hydra" / "config.yaml").read_text())
    hydra = yaml.safe_load((shared / ".hydra" / "hydra.yaml").read_text())
    change(config, hydra)
    (shared / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (shared / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    refused = run_main("resnet_lab.reproduce", str(shared), "hydra.run.dir=rerun", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and needle in refused.stderr, refused.stderr
    with pytest.raises(DataError, match=needle):
        checked_shared_config(config, hydra["hydra"]["runtime"]["choices"], "test")


def crafted(run: Path, to: Path, edit) -> Path:
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    edit(state)
    to.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, to)
    return to


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda s: s["trainer"].update(model="weights"), "no model weights"),
        (lambda s: s.update(config="model: x"), "its config is a str"),
        (lambda s: next(v for v in s["trainer"]["model"].values() if v.is_floating_point()).fill_(float("nan")), "NaN or infinite weights"),
    ],
    ids=["model state a string", "config a string", "NaN weights"],
)
def test_crafted_checkpoints_are_refused_in_one_line_by_every_command(finished_run, tmp_path, edit, needle):
    root, _, run = finished_run
    checkpoint = crafted(run, tmp_path / "sent" / "last.pt", edit)
    for command, extra in (
        ("resnet_lab.reproduce", ["hydra.run.dir=rerun"]),
        ("resnet_lab.evaluate", ["--out", "out"]),
        ("resnet_lab.predict", [str(root / "im" / "test" / "ant"), "--out", "out"]),
    ):
        refused = run_main(command, str(checkpoint), *extra, cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and needle in refused.stderr, (command, refused.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sent"]


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "hostname").write_text("machine-7\n")
    refused = run_main("resnet_lab.reproduce", str(tmp_path / "hostname"), cwd=tmp_path)
    assert refused.returncode == 2 and "is not a PyTorch checkpoint" in refused.stderr and "Python objects" not in refused.stderr, refused.stderr


def test_a_damaged_summary_is_refused_by_evaluate_before_it_writes(finished_run, tmp_path):
    _, _, run = finished_run
    shared = copy_run(run, tmp_path / "received")
    (shared / "summary.json").write_text('{"final": ')
    refused = run_main("resnet_lab.evaluate", str(shared), "--out", "out", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "summary.json is damaged" in refused.stderr, refused.stderr
    assert not (tmp_path / "out").exists()


def test_hydras_rerun_of_a_saved_job_reruns_it_with_its_group_choices_and_new_overrides(finished_run, tmp_path):
    """`--experimental-rerun <job dir>` (Hydra 1.4) composes the job's own overrides again over
    resnet_lab's config tree, then the new ones: the same values, a group switched on top, in a
    new folder; into the job's own folder it is refused like any finished run's."""
    root, _, run = finished_run
    rerun = run_main("resnet_lab.train", "--experimental-rerun", str(run), "optimizer=adamw", f"hydra.run.dir={tmp_path / 'again'}", cwd=root)
    assert rerun.returncode == 0, rerun.stderr
    before, after = (yaml.safe_load((folder / ".hydra" / "config.yaml").read_text()) for folder in (run, tmp_path / "again"))
    switched = ("optimizer", "scheduler")  # the optimizer's own max_lr comes with it
    assert {k: v for k, v in after.items() if k not in switched} == {k: v for k, v in before.items() if k not in switched}
    assert after["optimizer"]["_target_"] != before["optimizer"]["_target_"]
    choices = yaml.safe_load((tmp_path / "again" / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    assert choices["optimizer"] == "adamw" and choices["data"] == "image_folder"
    stored = load_saved_config(tmp_path / "again" / "checkpoints" / "last.pt")[1]
    assert stored is not None and stored["optimizer"] == "adamw", "a checkpoint carries the options Hydra chose, not guesses from _target_"
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["epochs"] == 1
    assert f"evaluate it:  python -m resnet_lab.evaluate {tmp_path / 'again'}\n" in rerun.stdout, "a single run ends with what to try next"
    assert "optimizer=adamw scheduler.max_lr=0.05,0.1,0.2\n" in rerun.stdout, "... and a sweep of the same settings"
    into_itself = run_main("resnet_lab.train", "--experimental-rerun", str(run), cwd=root)
    assert into_itself.returncode == 2 and "holds a finished run" in into_itself.stderr and into_itself.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "flags",
    [
        ["--config-dir", "{run}/.hydra", "--config-name", "config"],
        ["--config-path", "{run}/.hydra", "--config-name", "config"],
        ["--experimental-rerun", "{run}/.hydra/config.pickle"],
    ],
)
def test_hydras_older_rerun_forms_name_the_command_that_reruns_the_job(finished_run, flags):
    root, _, run = finished_run
    result = run_main("resnet_lab.train", *[flag.format(run=run) for flag in flags], cwd=root)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"python -m resnet_lab.train --experimental-rerun {run} " in result.stderr and f"python -m resnet_lab.reproduce {run}" in result.stderr
