"""The speed path's switches: compile once per process, test-time augmentation, evaluation
cadence and optimizer kernels. (Speed itself is measured by benchmarks/, never here.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo.utils
from torch import nn

from conftest import TINY, compose_config
from resnet_lab.augment.tta import tta_logits
from resnet_lab.config import validate
from resnet_lab.config.schema import TTAMode
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.train.run import build_trainer


def test_tta_averages_the_mirrored_and_shifted_views():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    x = torch.randn(6, 3, 8, 8)
    plain, mirror = model(x), model(x.flip(-1))
    torch.testing.assert_close(tta_logits(model, x, TTAMode.none), plain)
    torch.testing.assert_close(tta_logits(model, x, TTAMode.flip), (plain + mirror) / 2)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [x, padded[..., :-2, :-2], padded[..., 2:, 2:]]
    pairs = [(model(v) + model(v.flip(-1))) / 2 for v in views]
    torch.testing.assert_close(tta_logits(model, x, TTAMode.flip_translate), pairs[0] / 2 + (pairs[1] + pairs[2]) / 4)


@pytest.mark.parametrize(("setting", "expected"), [("fused", {"fused": True}), ("foreach", {"foreach": True}), ("for_loop", {"foreach": False})])
def test_optimizer_implementation_reaches_torch(setting, expected):
    for group in ("sgd", "adam", "adamw"):
        cfg = compose_config([f"optimizer={group}", f"optimizer.implementation={setting}"])
        optimizer = build_optimizer(validate(cfg).optimizer, nn.Linear(3, 2), lr=0.1, batch_size=cfg.data.batch_size)
        assert {k: optimizer.defaults[k] for k in expected} == expected


def test_auto_implementation_keeps_torchs_default_on_the_cpu():
    optimizer = build_optimizer(validate(compose_config([])).optimizer, nn.Linear(3, 2), lr=0.1, batch_size=512)
    assert not optimizer.defaults.get("fused")


def test_bad_speed_settings_are_one_clear_line(image_root, tmp_path):
    from conftest import run_main

    for override, allowed in (
        ("trainer.compile=fast", "auto, off, default"),
        ("trainer.tta=rotate", "none, flip, flip_translate"),
        ("optimizer.implementation=cuda", "auto, fused, foreach, for_loop"),
    ):
        result = run_main("resnet_lab.train", "data=image_folder", f"data.root={image_root}", *TINY, override, cwd=tmp_path)
        assert result.returncode == 2 and allowed in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_eval_every_zero_evaluates_once_and_tta_is_the_objective(image_root):
    cfg = compose_config(["data=image_folder", f"data.root={image_root}", *TINY, "trainer.epochs=3", "trainer.eval_every=0", "trainer.tta=flip_translate"])
    trainer, _, _ = build_trainer(validate(cfg))
    history = trainer.fit(3)
    assert [math.isnan(m.eval_acc) for m in history] == [True, True, False]
    assert [m.tta_acc is None for m in history] == [True, True, False]
    assert history[-1].objective == history[-1].tta_acc >= 0.6, "learns the synthetic classes (chance is 1/3)"


@pytest.mark.slow
def test_a_later_job_reuses_the_compiled_model_with_fresh_weights(image_root):
    """Two jobs of one process with trainer.compile=default: the second compiles nothing and,
    starting from the same seed, trains exactly as the first (its weights were reset)."""
    cfg = compose_config(["data=image_folder", f"data.root={image_root}", *TINY, "trainer.epochs=2", "trainer.compile=default"])
    first, _, _ = build_trainer(validate(cfg))
    assert first.compile_mode == "default" and first.train_model is not first.model
    runs = [first.fit(2)]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    second, _, _ = build_trainer(validate(cfg))
    assert second.model is first.model and second.train_model is first.train_model
    runs.append(second.fit(2))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "no recompilation in the second job"
    assert [m.train_loss for m in runs[1]] == pytest.approx([m.train_loss for m in runs[0]], rel=1e-5)
    assert runs[1][-1].eval_acc == runs[0][-1].eval_acc >= 0.6


def test_weight_average_lerps_by_the_decay_of_its_interval_and_swaps_back():
    from resnet_lab.train.ema import WeightAverage

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9, every=2)
    start = [t.clone() for t in average.tensors]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()
    live = WeightAverage._live(model)
    for a, s, current in zip(average.tensors, start, live):
        torch.testing.assert_close(a, s + (1 - 0.81) * (current - s))
    before = [t.clone() for t in live]
    averaged = [t.clone() for t in average.tensors]
    average.swap()
    assert all(torch.equal(t, a) for t, a in zip(WeightAverage._live(model), averaged))
    average.swap()
    assert all(torch.equal(t, b) for t, b in zip(WeightAverage._live(model), before))


def test_lookahead_pulls_the_live_weights_back_to_the_average():
    from resnet_lab.train.ema import WeightAverage

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    slow = WeightAverage(model, decay=0.5, every=1, lookahead=True)
    start = [t.clone() for t in slow.tensors]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(2.0)
    fast = [t.clone() for t in WeightAverage._live(model)]
    slow.update()
    for a, s, f, live in zip(slow.tensors, start, fast, WeightAverage._live(model)):
        torch.testing.assert_close(a, (s + f) / 2)
        assert torch.equal(live, a), "the live weights restart from the slow ones"
    assert slow.state_dict()["lookahead"] is True


def test_lookahead_run_learns(image_root):
    cfg = compose_config(
        [
            "data=image_folder",
            f"data.root={image_root}",
            *TINY,
            "trainer.epochs=3",
            "trainer.ema_decay=0.8",
            "trainer.ema_every=3",
            "trainer.ema_lookahead=true",
        ]
    )
    trainer, _, _ = build_trainer(validate(cfg))
    assert trainer.ema.lookahead
    history = trainer.fit(3)
    assert history[-1].eval_acc >= 0.6, "learns the synthetic classes (chance is 1/3)"


def test_ema_run_learns_ends_on_the_average_and_frozen_bn_scales_stay_one(image_root):
    cfg = compose_config(
        [
            "data=image_folder",
            f"data.root={image_root}",
            *TINY,
            "trainer.epochs=3",
            "trainer.ema_decay=0.9",
            "trainer.ema_every=2",
            "model.bn_scale_trainable=false",
        ]
    )
    trainer, _, _ = build_trainer(validate(cfg))
    history = trainer.fit(3)
    assert history[-1].eval_acc >= 0.6, "learns the synthetic classes (chance is 1/3)"
    assert trainer.evaluate()[1] == history[-1].eval_acc, "the model now holds the weights that were evaluated"
    final = trainer.ema._live(trainer.model)
    assert not all(torch.equal(t, a) for t, a in zip(final, trainer.ema.tensors)), "the live weights were swapped out for the average"
    scales = [m.weight for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert scales and all(not w.requires_grad and torch.all(w == 1) for w in scales)
    assert trainer.state_dict()["ema"]["decay"] == 0.9
