"""`python -m resnet_lab.evaluate`: a trained run's weights on its own split give exactly the
accuracy the run recorded (with and without its TTA), and other data or another model is refused
in one line with nothing written."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest
import wandb

from conftest import TINY, compose_config, write_image_folder
from resnet_lab import evaluate
from resnet_lab.config import validate
from resnet_lab.job import JobContext
from resnet_lab.train.run import run_training

pytestmark = pytest.mark.slow  # every test here starts a command or trains


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with flip TTA and an offline W&B run, trained in this process (its config lives
    in its checkpoints)."""
    folder = tmp_path_factory.mktemp("evaluate")
    root = write_image_folder(folder / "im", train_per_class=48, test_per_class=12)
    settings = [*TINY, "logger=wandb", "logger.mode=offline", "trainer.epochs=2", "trainer.tta=flip", "scheduler.max_lr=0.05"]
    cfg = compose_config(["data=image_folder", f"data.root={root}", *settings])
    run_training(validate(cfg), JobContext(folder / "run"))
    wandb.teardown()  # as at a process's exit: W&B's service has written the run's log
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


def test_with_a_logger_the_evaluation_is_a_wandb_run_naming_what_it_evaluated(trained, tmp_path):
    from resnet_lab.track.offline_run import read_offline_run

    out = tmp_path / "tracked"
    evaluate.main([str(trained / "run"), "logger=wandb", "logger.mode=offline", "--out", str(out)])
    wandb.teardown()  # as at the command's exit
    logged = read_offline_run(next((out / "wandb").glob("offline-run-*")))
    result = json.loads((out / "evaluation.json").read_text())["results"]
    assert logged.config["evaluated_run"] == str(trained / "run") and logged.config["evaluated_checkpoint"].endswith("checkpoints/last.pt")
    assert logged.summary["none/top1"] == result["none"]["top1"] and logged.summary["flip/top1"] == result["flip"]["top1"]


def test_a_wandb_run_folder_or_a_downloaded_model_artifact_is_evaluated_as_its_run(trained, tmp_path, capsys):
    """`wandb artifact get <entity>/<project>/best-checkpoint:v0` downloads the model artifact as
    a folder holding best.pt; a W&B run folder lies in <run dir>/wandb/."""
    summary = json.loads((trained / "run" / "summary.json").read_text())
    artifact = tmp_path / "artifacts" / "best-checkpoint:v0"
    artifact.mkdir(parents=True)
    shutil.copy(trained / "run" / "checkpoints" / "best.pt", artifact / "best.pt")
    wandb_run = next((trained / "run" / "wandb").glob("offline-run-*"))
    for location, expected in ((wandb_run, summary["final"]["eval_acc"]), (artifact, summary["best_eval_acc"])):
        out = tmp_path / location.name
        evaluate.main([str(location), "--out", str(out)])
        assert json.loads((out / "evaluation.json").read_text())["results"]["none"]["top1"] == expected, location
    assert "the run recorded" in capsys.readouterr().out, "the W&B run's checkpoint is its run's last.pt"


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


def test_predict_labels_files_and_folders_like_evaluate_and_skips_what_it_cannot_read(trained, tmp_path, capsys):
    from PIL import Image

    from resnet_lab import predict

    evaluate.main([str(trained / "run"), "--out", str(tmp_path / "eval")])
    recorded = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["results"]["none"]["top1"]
    (tmp_path / "bad.png").write_text("not an image")
    Image.open(next((trained / "im" / "test" / "bee").iterdir())).resize((64, 48)).save(tmp_path / "big_bee.jpg")
    capsys.readouterr()
    predict.main([str(trained / "run"), str(trained / "im" / "test"), str(tmp_path / "bad.png"), str(tmp_path / "big_bee.jpg"), "--out", str(tmp_path / "p")])
    printed = capsys.readouterr()
    rows = list(csv.DictReader((tmp_path / "p" / "predictions.csv").open()))
    folder_rows = [r for r in rows if "/test/" in r["file"]]
    assert len(folder_rows) == 36 and len(rows) == 37, "every test image and the resized one; the unreadable one skipped"
    assert sum(r["class_1"] == r["file"].split("/")[-2] for r in folder_rows) / 36 == recorded, "the same classes as evaluate"
    assert all(float(r["probability_1"]) >= float(r["probability_2"]) >= float(r["probability_3"]) for r in rows)
    assert f"skipped (unreadable): {tmp_path / 'bad.png'}" in printed.err and "37 images labelled, 1 skipped" in printed.out

    with pytest.raises(SystemExit) as stopped:
        predict.main([str(trained / "run"), str(tmp_path / "bad.png"), "--out", str(tmp_path / "none")])
    assert stopped.value.code == 2 and "none of the 1 images could be read" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_explain_draws_the_gallery_for_a_run_and_gradcam_for_a_users_images(trained, tmp_path, capsys):
    from PIL import Image

    from resnet_lab.explain.__main__ import main as explain

    explain([str(trained / "run"), "explain.select=confident", "explain.n_images=4", "--out", str(tmp_path / "gallery")])
    shown = json.loads((tmp_path / "gallery" / "misclassified.json").read_text())
    assert shown["n_evaluated"] == 36 and len(shown["images"]) == min(4, shown["n_misclassified"]) and shown["target_layer"] == "layer3.1"
    assert (tmp_path / "gallery" / "misclassified_gradcam.png").is_file() and (tmp_path / "gallery" / "confusion_matrix.png").is_file()

    mine = tmp_path / "mine"
    mine.mkdir()
    Image.open(next((trained / "im" / "test" / "cat").iterdir())).resize((80, 60)).save(mine / "wide_cat.png")
    Image.open(next((trained / "im" / "test" / "ant").iterdir())).convert("L").save(mine / "grey_ant.jpg")
    capsys.readouterr()
    explain([str(trained / "run"), str(mine), "--class", "bee", "--out", str(tmp_path / "own")])
    assert "2 images explained (class bee), 0 skipped" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "own").iterdir()) == ["gradcam_sheet.png", "grey_ant_gradcam.png", "wide_cat_gradcam.png"]

    with pytest.raises(SystemExit) as stopped:
        explain([str(trained / "run"), str(mine), "--class", "dog", "--out", str(tmp_path / "refused")])
    assert stopped.value.code == 2 and "--class dog is not one of the run's classes: ant, bee, cat" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_a_checkpoint_from_before_the_last_epoch_is_scored_with_the_average_the_run_scored(tmp_path):
    """With trainer.ema_decay the loop scores the weight average; until the last epoch a checkpoint
    holds the live weights and the average apart, and rebuilding it must score the average."""
    from resnet_lab.saved_run import rebuild
    from resnet_lab.train.run import build_trainer

    root = write_image_folder(tmp_path / "im", train_per_class=48, test_per_class=12)
    cfg = compose_config(["data=image_folder", f"data.root={root}", *TINY, "trainer.epochs=3", "trainer.ema_decay=0.5", "scheduler.max_lr=0.05"])
    run = validate(cfg)
    trainer, _, _ = build_trainer(run, max_lr=0.05)
    saved = {}
    trainer.fit(3, callbacks=[lambda t, m: saved.setdefault(m.epoch, copy.deepcopy({"trainer": t.state_dict(), "epoch": m.epoch}))])
    recorded = [(m.eval_loss, m.eval_acc) for m in trainer.history]
    live_after_first = build_trainer(run, max_lr=0.05)[0]
    live_after_first.model.load_state_dict(saved[1]["trainer"]["model"])
    live_loss = live_after_first.evaluate()[0]
    assert live_loss != pytest.approx(recorded[0][0], rel=1e-3), "the live weights score otherwise than the average: the case is exercised"
    for epoch in (1, 3):
        evaluator, _, _ = rebuild(run, tmp_path / "last.pt", saved[epoch])
        assert evaluator.evaluate() == pytest.approx(recorded[epoch - 1], rel=1e-6), f"epoch {epoch}: the weights the run scored"
