"""LR range test: suggestions, exact restoration, the CLI's files, and `scheduler.max_lr=auto`."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from conftest import TINY, compose_config, run_cli, write_image_folder
from resnet_lab.optim import build_optimizer
from resnet_lab.optim.lr_range import range_test, valley
from resnet_lab.config import validate
from resnet_lab.train.components import build_components
from resnet_lab.train import run_training


def tiny_config(root, *extra):
    return compose_config(["data=image_folder", f"data.root={root}", *TINY, "lr_finder.num_iter=40", *extra])


def test_valley_lands_inside_the_falling_stretch():
    lrs = [10 ** (-6 + i * 0.1) for i in range(70)]
    losses = [2.3] * 20 + [2.3 - 0.04 * i for i in range(30)] + [1.1 + 0.2 * i for i in range(20)]
    pick = valley(lrs, losses)
    assert lrs[20] < pick < lrs[49]


def test_range_test_suggests_a_finite_lr_in_range_and_restores_everything(image_root):
    cfg = tiny_config(image_root, "optimizer=adam")
    parts = build_components(cfg)
    finder_cfg = validate(cfg)["lr_finder"]
    optimizer = build_optimizer(cfg.optimizer, parts.model, lr=finder_cfg.start_lr)
    weights = copy.deepcopy(parts.model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    result = range_test(parts.model, optimizer, parts.train_loader, parts.eval_loader, finder_cfg, parts.precision)
    for value in (result.steepest, result.valley, result.suggestion):
        assert math.isfinite(value) and finder_cfg.start_lr <= value <= finder_cfg.end_lr
    assert len(result.lr) == len(result.loss) <= finder_cfg.num_iter
    for key, tensor in parts.model.state_dict().items():
        assert torch.equal(tensor, weights[key]), key
    assert optimizer.state_dict()["state"] == optimizer_state["state"]
    assert optimizer.param_groups[0]["lr"] == finder_cfg.start_lr


@pytest.mark.slow
def test_lr_find_cli_writes_json_and_plot(image_root, tmp_path):
    result = run_cli("resnet_lab.lr_find", "data=image_folder", f"data.root={image_root}", *TINY, "lr_finder.num_iter=40", "hydra.run.dir=lrf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads((tmp_path / "lrf" / "lr_finder.json").read_text())
    assert {"lr", "loss", "steepest", "valley", "suggestion", "chosen", "why"} <= set(payload)
    assert payload["chosen"] == "valley" and payload["suggestion"] == payload["valley"]
    assert (tmp_path / "lrf" / "lr_finder.png").stat().st_size > 10_000
    assert f"suggested max_lr: {payload['suggestion']:.4g}" in result.stdout


def test_max_lr_auto_reads_a_given_lr_finder_json(image_root, tmp_path):
    given = tmp_path / "lr_finder.json"
    given.write_text(json.dumps({"suggestion": 0.0123, "valley": 0.0123, "steepest": 0.2}))
    cfg = tiny_config(image_root, "scheduler.max_lr=auto", f"lr_finder.file={given}", "trainer.epochs=1", "scheduler=constant")
    run_training(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["max_lr"] == 0.0123 and summary["max_lr_source"] == str(given)
    assert summary["final"]["lr"] == pytest.approx(0.0123)


def test_max_lr_auto_runs_the_range_test_first(image_root, tmp_path):
    cfg = tiny_config(image_root, "scheduler.max_lr=auto", "trainer.epochs=1")
    run_training(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    found = json.loads((tmp_path / "run" / "lr_finder.json").read_text())
    assert summary["max_lr"] == found["suggestion"] and summary["max_lr_source"].endswith("lr_finder.json")


def test_bad_lr_finder_settings_are_refused():
    from resnet_lab.config import ConfigError

    with pytest.raises(ConfigError, match="lr_finder.end_lr"):
        validate(compose_config(["lr_finder.start_lr=1", "lr_finder.end_lr=0.1"]))
    with pytest.raises(ConfigError, match="'auto'"):
        validate(compose_config(["scheduler.max_lr=fast"]))
