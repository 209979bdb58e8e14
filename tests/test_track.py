"""W&B runs read back from disk, GradCAM galleries, and reproducing runs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, compose_config, run_cli, run_main
from resnet_lab.config import validate
from resnet_lab.explain import explain_misclassified
from resnet_lab.job import JobContext
from resnet_lab.track.offline_run import read_offline_run
from resnet_lab.train.run import build_trainer, run_training

# A barely trained net (tiny LR, one epoch) gets most of the 3-class test set wrong: a gallery.
UNTRAINED = ["scheduler.max_lr=0.0001", "trainer.epochs=1"]


def tiny_args(root: Path) -> list[str]:
    return ["data=image_folder", f"data.root={root}", *TINY]


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_offline_wandb_run_holds_config_metrics_gallery_and_artifacts(image_root, tmp_path):
    result = run_main(
        "resnet_lab.train",
        *tiny_args(image_root),
        "logger=wandb",
        "explain=gradcam",
        "explain.n_images=6",
        "trainer.epochs=2",
        "scheduler.max_lr=0.0001",
        "logger.tags=[ci,tiny]",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run = read_offline_run(tmp_path / "run")
    assert run.job_type == "train" and run.name != "" and run.tags == ["ci", "tiny"] and run.exit_code == 0
    assert "${" not in json.dumps(run.config), "the logged config must be resolved"
    assert run.config["logger"]["mode"] == "offline" and run.config["trainer"]["epochs"] == 2
    assert "trainer.epochs=2" in run.config["overrides"]
    epochs = [row for row in run.history if "train/acc" in row]
    assert [row["epoch"] for row in epochs] == [1, 2] and all("test/acc" in row and "lr" in row for row in epochs)
    assert run.summary["misclassified_gradcam"]["_type"] == "table-file"
    assert run.summary["misclassified_gradcam"]["nrows"] == 6 and run.summary["misclassified_gradcam"]["ncols"] == 5
    assert ("best-checkpoint", "model") in run.artifacts and ("hydra-config", "config") in run.artifacts
    assert run.summary["final_eval_acc"] == json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["eval_acc"]
    assert "reproduce this run: python -m resnet_lab.reproduce" in result.stdout


@pytest.mark.slow
def test_logger_none_writes_no_wandb_files(image_root, tmp_path):
    result = run_main("resnet_lab.train", *tiny_args(image_root), "trainer.epochs=1", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "run" / "wandb").exists() and not (tmp_path / "wandb").exists()


@pytest.mark.slow
def test_wandb_failing_to_start_leaves_training_and_files_intact(image_root, tmp_path):
    env_free = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    os.environ.clear()
    os.environ.update({**env_free, "WANDB_CONFIG_DIR": str(tmp_path / "no-login")})
    try:
        result = run_cli(
            "resnet_lab.train", *tiny_args(image_root), "logger=wandb", "logger.mode=online", "trainer.epochs=2", "hydra.run.dir=run", cwd=tmp_path
        )
    finally:
        os.environ.clear()
        os.environ.update(env_free)
    assert result.returncode == 0, result.stderr
    assert "W&B could not start" in result.stdout + result.stderr
    for name in ("metrics.csv", "summary.json", "curves.png", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert len(metrics_rows(tmp_path / "run")) == 2


def test_gallery_has_n_cells_with_real_overlays_and_leaves_the_model_as_found(image_root, tmp_path):
    cfg = compose_config([*tiny_args(image_root), "explain=gradcam", "explain.n_images=5", "explain.target_layer=layer2"])
    trainer, classes, _ = build_trainer(validate(cfg))
    model = trainer.model
    model.train()
    model.prep[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cells = explain_misclassified(model, trainer.eval_loader, classes, validate(cfg).explain, tmp_path)
    assert len(cells) == 5
    for cell in cells:
        assert cell.image.shape == cell.overlay.shape == (32, 32, 3) and cell.image.dtype == cell.overlay.dtype
        assert (cell.image != cell.overlay).any() and cell.predicted != cell.true
        assert cell.title.startswith(f"pred: {cell.predicted} / true: {cell.true} (p=")
    assert all(m.training for m in model.modules())
    assert not model.prep[0].weight.requires_grad and all(p.requires_grad for n, p in model.named_parameters() if n != "prep.0.weight")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    saved = json.loads((tmp_path / "misclassified.json").read_text())
    assert [c["index"] for c in saved["images"]] == [c.index for c in cells]
    assert (tmp_path / "misclassified_gradcam.png").stat().st_size > 10_000 and (tmp_path / "confusion_matrix.png").is_file()
    # The first images of the (image) gallery are the original pixels, un-normalised.
    assert torch.equal(torch.from_numpy(cells[0].image).permute(2, 0, 1), trainer.eval_loader.images[cells[0].index].cpu())


def test_unknown_target_layer_is_named(image_root, tmp_path):
    from resnet_lab.config import ConfigError

    cfg = compose_config([*tiny_args(image_root), "explain=gradcam", "explain.target_layer=layer9"])
    with pytest.raises(ConfigError, match="layer9.*layer3.1"):
        run_training(validate(cfg), JobContext(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.csv").exists(), "refused before the first epoch"


@pytest.mark.slow
def test_reproduce_gives_identical_metrics_and_an_override_changes_only_its_key(image_root, tmp_path):
    args = [*tiny_args(image_root), "trainer.epochs=2", "trainer.deterministic=true", "optimizer=adamw", "model.dropout=0.1"]
    original = run_main("resnet_lab.train", *args, "hydra.run.dir=orig", cwd=tmp_path)
    assert original.returncode == 0, original.stderr
    again = run_main("resnet_lab.reproduce", "orig", "hydra.run.dir=again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert metrics_rows(tmp_path / "again") == metrics_rows(tmp_path / "orig")
    assert "eval_acc" in again.stdout and "+0" in again.stdout
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["reproduced_from"] == str(tmp_path / "orig")

    changed = run_main("resnet_lab.reproduce", str(tmp_path / "orig" / "checkpoints" / "last.pt"), "trainer.seed=7", "hydra.run.dir=seed7", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    old = yaml.safe_load((tmp_path / "orig" / ".hydra" / "config.yaml").read_text())
    new = yaml.safe_load((tmp_path / "seed7" / ".hydra" / "config.yaml").read_text())
    assert new["trainer"].pop("seed") == 7 and old["trainer"].pop("seed") == 0
    new.pop("reproduced_from"), old.pop("reproduced_from")
    assert new == old


@pytest.mark.slow
def test_reproduce_from_the_wandb_run_directory(image_root, tmp_path):
    original = run_main(
        "resnet_lab.train", *tiny_args(image_root), "logger=wandb", "trainer.epochs=1", "trainer.deterministic=true", "hydra.run.dir=orig", cwd=tmp_path
    )
    assert original.returncode == 0, original.stderr
    wandb_dir = next((tmp_path / "orig" / "wandb").glob("offline-run-*"))
    again = run_main("resnet_lab.reproduce", str(wandb_dir), "logger=none", "hydra.run.dir=again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert metrics_rows(tmp_path / "again") == metrics_rows(tmp_path / "orig")


@pytest.mark.slow
def test_reproduce_of_a_missing_or_damaged_run_is_one_clear_line(tmp_path):
    missing = run_main("resnet_lab.reproduce", "nowhere", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    damaged = tmp_path / "damaged"
    (damaged / ".hydra").mkdir(parents=True)
    (damaged / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    result = run_main("resnet_lab.reproduce", str(damaged), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "damaged" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_main("resnet_lab.reproduce", str(empty), cwd=tmp_path)
    assert result.returncode == 2 and "holds no saved config" in result.stderr


def test_gallery_selection_spreads_confident_mistakes_over_the_true_classes():
    from resnet_lab.config.schema import GallerySelect
    from resnet_lab.explain.gradcam import select_mistakes

    true = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = torch.tensor([1, 1, 0, 0, 0, 0, 1, 2])
    confidence = torch.tensor([0.6, 0.9, 0.99, 0.7, 0.5, 0.4, 0.8, 0.95])
    # mistakes: 0 (class 0, p .6), 1 (class 0, p .9), 3 (class 1, p .7), 4 (class 1, p .5), 5 (class 2, p .4), 6 (class 2, p .8)
    assert select_mistakes(predicted, confidence, true, 4, GallerySelect.per_class) == [1, 6, 3, 0]
    assert select_mistakes(predicted, confidence, true, 3, GallerySelect.confident) == [1, 6, 3]
    assert select_mistakes(predicted, confidence, true, 3, GallerySelect.first) == [0, 1, 3]
    drawn = select_mistakes(predicted, confidence, true, 3, GallerySelect.random)
    assert drawn == select_mistakes(predicted, confidence, true, 3, GallerySelect.random) and set(drawn) <= {0, 1, 3, 4, 5, 6}
    assert len(select_mistakes(predicted, confidence, true, 50, GallerySelect.per_class)) == 6


def test_a_run_saved_before_each_option_had_its_own_schema_still_replays():
    """Older runs saved W&B keys under logger=none, gallery keys under explain=none and
    data.download under image_folder; reproducing them replays only what today's option knows."""
    from omegaconf import OmegaConf

    from resnet_lab.saved_run import overrides_for

    saved = OmegaConf.to_container(compose_config(["data=image_folder", "logger=none", "explain=none"]), resolve=True, enum_to_str=True)
    saved["logger"] |= {"mode": "offline", "project": "resnet_lab", "entity": None, "tags": []}
    saved["explain"] |= {"n_images": 22, "select": "per_class", "target_layer": "layer3.1", "columns": 4}
    saved["data"]["download"] = False
    cfg = compose_config(overrides_for(saved, None))
    validate(cfg)
    assert cfg.data.format.value == "image_folder" and set(cfg.logger) == {"kind"} and set(cfg.explain) == {"enabled"}
