"""Every group option composes and builds; every bad setting is one line and a non-zero exit."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from conftest import TINY, compose_config, run_main
from resnet_lab.config import ConfigError, validate
from resnet_lab.config.schema import SCHEMAS
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.train.run import build_trainer

OPTIONS = [(group, option) for group, options in SCHEMAS.items() for option in options]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_validates_and_builds(group, option, image_root):
    # resnet18 has no width multiplier (torchvision fixes its widths): it runs at full width.
    overrides = [o for o in TINY if not (option == "resnet18" and o.startswith("model.width_multiplier"))] + [f"{group}={option}"]
    if group != "data" or option == "image_folder":
        overrides += ["data=image_folder", f"data.root={image_root}"]
    cfg = compose_config(overrides)
    typed = validate(cfg)
    if group == "data" and option == "cifar10":
        assert typed.data.format.value == "cifar10"
        return
    trainer, classes, _ = build_trainer(validate(cfg))
    assert classes == ["ant", "bee", "cat"]
    assert trainer.model.fc.out_features == 3
    lrs = []
    for _ in range(len(trainer.train_loader) * cfg.trainer.epochs):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert max(lrs) == pytest.approx(cfg.scheduler.max_lr, rel=1e-6)


@pytest.mark.parametrize("experiment", ["default", "seed_replica"])
def test_experiments_compose(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    validate(cfg)
    if experiment == "seed_replica":
        assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.weight_decay == 1e-2
        assert cfg.scheduler.max_lr == 0.01 and cfg.trainer.epochs == 20 and cfg.data.batch_size == 512
        assert cfg.augmentation.cutout_size == 8
    else:
        assert cfg.optimizer.nesterov and cfg.scheduler.max_lr == 0.4 and cfg.trainer.label_smoothing == 0.2


def test_command_line_group_choice_beats_the_experiment():
    cfg = compose_config(["optimizer=adamw", "scheduler=cosine"])
    validate(cfg)
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and "warmup_epochs" in cfg.scheduler


def test_weight_decay_exemption_groups():
    cfg = compose_config(["model.width_multiplier=0.125", "optimizer.decay_norm_and_bias=false"])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = build_optimizer(validate(cfg).optimizer, model, lr=0.1, batch_size=cfg.data.batch_size)
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 5e-4 and len(decayed["params"]) == 1
    assert exempt["weight_decay"] == 0.0 and len(exempt["params"]) == 3


# (override, text the one-line error must contain)
BAD_RANGES = [
    ("trainer.epochs=0", "trainer.epochs=0"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.batch_size=-4", "data.batch_size=-4"),
    ("scheduler.max_lr=-0.1", "scheduler.max_lr=-0.1"),
    ("scheduler.max_lr=0", "scheduler.max_lr=0"),
    ("augmentation.flip_p=1.5", "augmentation.flip_p=1.5"),
    ("augmentation.cutout_p=-0.1", "augmentation.cutout_p=-0.1"),
    ("trainer.label_smoothing=1.0", "trainer.label_smoothing=1.0"),
    ("model.dropout=1.0", "model.dropout=1.0"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay=-1"),
    ("optimizer.momentum=1.2", "optimizer.momentum=1.2"),
    ("data.val_fraction=1.0", "data.val_fraction=1.0"),
    ("trainer.ema_lookahead=true", "trainer.ema_lookahead"),
    ("data.format=image_folder", "data.format='image_folder'"),  # the format belongs to the data option (here cifar10)
]


@pytest.mark.parametrize(("override", "expected"), BAD_RANGES)
def test_out_of_range_values_are_refused_before_anything_runs(override, expected):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match="is not allowed") as caught:
        validate(cfg)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "override",
    ["model=resnet50", "trainer.epochs=abc", "trainer.nonsense=1", "model.head_pool=min", "trainer.deterministic=maybe", "data.mean=3"],
)
def test_unknown_options_keys_and_wrong_types_fail_at_composition(override):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_config([override])


# The CLI: (override, substrings of the single stderr line)
CLI_CASES = [
    ("model=resnet50", ["model/resnet50", "custom_resnet"]),
    ("optimizer=lbfgs", ["optimizer/lbfgs", "adam", "sgd"]),
    ("trainer.nonsense=1", ["trainer.nonsense", "allowed keys: device, epochs"]),
    ("trainer.epochs=abc", ["trainer.epochs", "'abc'", "Integer"]),
    ("trainer.epochs=0", ["trainer.epochs=0", ">= 1"]),
    ("data.batch_size=0", ["data.batch_size=0", ">= 1"]),
    ("scheduler.max_lr=-1", ["scheduler.max_lr=-1", "> 0"]),
    ("augmentation.flip_p=2", ["augmentation.flip_p=2", "[0, 1]"]),
    ("+surprise=1", ["surprise", "allowed"]),
    ("trainer.precision=fp8", ["trainer.precision", "fp32, bf16, fp16"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "needles"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_non_zero(override, needles, image_root, tmp_path):
    result = run_main("resnet_lab.train", "data=image_folder", f"data.root={image_root}", *TINY, override, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("metrics.csv"))
