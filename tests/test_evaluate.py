"""`python -m resnet_lab.evaluate`: a trained run's weights on its own split give exactly the
accuracy the run recorded (with and without its TTA), and other data or another model is refused
in one line with nothing written."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import TINY, compose_config, write_image_folder
from resnet_lab import evaluate
from resnet_lab.config import validate
from resnet_lab.job import JobContext
from resnet_lab.train.run import run_training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with flip TTA, trained in this process (its config lives in its checkpoints)."""
    folder = tmp_path_factory.mktemp("evaluate")
    root = write_image_folder(folder / "im", train_per_class=48, test_per_class=12)
    cfg = compose_config(["data=image_folder", f"data.root={root}", *TINY, "trainer.epochs=2", "trainer.tta=flip", "scheduler.max_lr=0.05"])
    run_training(validate(cfg), JobContext(folder / "run"))
    return folder


def test_the_runs_own_split_gives_the_recorded_accuracy_with_and_without_tta(trained, capsys):
    out = trained / "eval"
    evaluate.main([str(trained / "run"), "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    final = json.loads((trained / "run" / "summary.json").read_text())["final"]
    plain, flipped = result["results"]["none"], result["results"]["flip"]
    assert plain["top1"] == final["eval_acc"] and flipped["top1"] == final["tta_acc"], "the same weights, the same TTA"
    assert plain["top1"] >= 0.6, "the run learned (chance is 1/3)"
    assert plain["top5"] == 1.0, "3 classes: the top 5 always hold the truth"
    assert result["split"] == "test" and result["images"] == 36 and sum(map(sum, plain["confusion"])) == 36
    assert sorted(plain["per_class"]) == ["ant", "bee", "cat"]
    assert all(sum(row) == 12 for row in plain["confusion"])
    rows = list(csv.reader((out / "confusion_matrix.csv").open()))
    assert rows[0] == ["true \\ predicted", "ant", "bee", "cat"] and [int(v) for v in rows[1][1:]] == plain["confusion"][0]
    assert (out / "confusion_matrix.png").is_file() and (out / "confusion_matrix_flip.png").is_file()
    assert f"top-1 {100 * final['eval_acc']:.2f}%" in printed and f"outputs in {out}" in printed


def test_a_folder_that_is_not_a_run_other_classes_or_another_width_are_refused(trained, tmp_path, capsys):
    cases = {
        "not a run": ([str(tmp_path)], "holds no saved config"),
        "other classes": (
            [str(trained / "run"), f"data.root={write_image_folder(tmp_path / 'other', 4, 2, classes=['ant', 'dog', 'cat'])}"],
            "the data's classes differ from the run's (missing ['bee'], new ['dog'])",
        ),
        "another width": ([str(trained / "run"), "model.width_multiplier=0.25"], "does not fit the model its config describes"),
    }
    for case, (args, needle) in cases.items():
        out = tmp_path / case.replace(" ", "-")
        with pytest.raises(SystemExit) as stopped:
            evaluate.main([*args, "--out", str(out)])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1 and needle in err, (case, err)
        assert not out.exists(), f"{case}: nothing is written"
