"""LR range test: suggestions, exact restoration, the CLI's files, and `scheduler.max_lr=auto`."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from conftest import TINY, compose_config, run_main
from resnet_lab.config import validate
from resnet_lab.job import JobContext
from resnet_lab.optim.lr_range import range_test, valley
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.train.components import build_components
from resnet_lab.train.run import run_training


def tiny_config(root, *extra):
    return compose_config(["data=image_folder", f"data.root={root}", *TINY, "lr_finder.num_iter=40", *extra])


def test_valley_lands_inside_the_falling_stretch():
    lrs = [10 ** (-6 + i * 0.1) for i in range(70)]
    losses = [2.3] * 20 + [2.3 - 0.04 * i for i in range(30)] + [1.1 + 0.2 * i for i in range(20)]
    pick = valley(lrs, losses)
    assert lrs[20] < pick < lrs[49]


def test_range_test_suggests_a_finite_lr_in_range_and_restores_everything(image_root):
    cfg = tiny_config(image_root, "optimizer=adam")
    parts = build_components(validate(cfg))
    finder_cfg = validate(cfg).lr_finder
    optimizer = build_optimizer(validate(cfg).optimizer, parts.model, lr=finder_cfg.start_lr, batch_size=cfg.data.batch_size)
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


def test_range_test_trains_each_group_as_a_run_at_that_max_lr_would(image_root):
    cfg = tiny_config(
        image_root,
        "optimizer.norm_bias_lr_scale=64",
        "optimizer.decoupled=true",
        "optimizer.momentum=0.85",
        "optimizer.weight_decay=0.0153",
        "lr_finder.num_iter=12",
        "lr_finder.skip_start=2",
        "lr_finder.skip_end=2",
    )
    parts = build_components(validate(cfg))
    finder_cfg = validate(cfg).lr_finder
    optimizer = build_optimizer(validate(cfg).optimizer, parts.model, lr=finder_cfg.start_lr, batch_size=cfg.data.batch_size)
    built = [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups]
    seen = []
    optimizer.register_step_post_hook(lambda opt, *_: seen.append([(g["lr"], g["weight_decay"]) for g in opt.param_groups]))
    result = range_test(parts.model, optimizer, parts.train_loader, parts.eval_loader, finder_cfg, parts.precision)
    scale = cfg.data.batch_size / (1024 * (1 + 1 / 0.15))
    assert len(seen) == len(result.lr) >= 10
    for (weights, norms), lr in zip(seen, result.lr):
        assert weights == (pytest.approx(lr * scale), 0.0) and norms == (pytest.approx(64 * lr * scale), 0.0)
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == built, "restored as built"


def test_range_test_applies_decoupled_decay_at_its_steady_state_size():
    from resnet_lab.optim.lr_range import _in_group_units

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    cfg = compose_config(["optimizer.decoupled=true", "optimizer.momentum=0.9", "optimizer.weight_decay=0.02", "optimizer.norm_bias_lr_scale=4"])
    optimizer = build_optimizer(validate(cfg).optimizer, model, lr=1e-3, batch_size=256)
    before = [p.detach().clone() for p in model.parameters()]
    for group in optimizer.param_groups:
        group["lr"] = 0.5
    _in_group_units(optimizer)
    scale = 256 / (1024 * (1 + 1 / 0.1))
    weights, norms = optimizer.param_groups
    assert weights["lr"] == pytest.approx(0.5 * scale) and norms["lr"] == pytest.approx(2.0 * scale)
    expected = {id(p): 1 - 0.02 * scale * 10 for p in weights["params"]} | {id(p): 1 - 0.02 / 4 * 4 * scale * 10 for p in norms["params"]}
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b * expected[id(p)])


@pytest.mark.slow
def test_lr_find_cli_writes_json_and_plot(image_root, tmp_path):
    result = run_main("resnet_lab.lr_find", "data=image_folder", f"data.root={image_root}", *TINY, "lr_finder.num_iter=40", "hydra.run.dir=lrf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "{finder_name}" not in result.stdout + result.stderr, "torch-lr-finder's placeholder line is not shown"
    payload = json.loads((tmp_path / "lrf" / "lr_finder.json").read_text())
    assert {"lr", "loss", "steepest", "valley", "suggestion", "chosen", "why"} <= set(payload)
    assert payload["chosen"] == "valley" and payload["suggestion"] == payload["valley"]
    assert (tmp_path / "lrf" / "lr_finder.png").stat().st_size > 10_000
    assert f"suggested max_lr: {payload['suggestion']:.4g}" in result.stdout


def test_max_lr_auto_reads_a_given_lr_finder_json(image_root, tmp_path):
    given = tmp_path / "lr_finder.json"
    given.write_text(json.dumps({"suggestion": 0.0123, "valley": 0.0123, "steepest": 0.2}))
    cfg = tiny_config(image_root, "scheduler.max_lr=auto", f"lr_finder.file={given}", "trainer.epochs=1", "scheduler=constant")
    run_training(validate(cfg), JobContext(tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["max_lr"] == 0.0123 and summary["max_lr_source"] == str(given)
    assert summary["final"]["lr"] == pytest.approx(0.0123)
    assert json.loads((tmp_path / "run" / "lr_finder.json").read_text()) == json.loads(given.read_text()), "the run folder holds the test it used"


def test_max_lr_auto_runs_the_range_test_first(image_root, tmp_path):
    cfg = tiny_config(image_root, "scheduler.max_lr=auto", "trainer.epochs=1")
    run_training(validate(cfg), JobContext(tmp_path / "run"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    found = json.loads((tmp_path / "run" / "lr_finder.json").read_text())
    assert summary["max_lr"] == found["suggestion"] and summary["max_lr_source"].endswith("lr_finder.json")


def test_bad_lr_finder_settings_are_refused():
    from resnet_lab.config import ConfigError

    with pytest.raises(ConfigError, match="lr_finder.end_lr"):
        validate(compose_config(["lr_finder.start_lr=1", "lr_finder.end_lr=0.1"]))
    with pytest.raises(ConfigError, match="'auto'"):
        validate(compose_config(["scheduler.max_lr=fast"]))
