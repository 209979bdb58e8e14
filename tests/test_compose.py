"""Every combination of the groups a user picks composes and validates, and the precedence the
README states holds in each: group option < experiment (and its optimizer/scheduler
specialisations) < command line."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import TINY, compose_config, write_image_folder
from resnet_lab import CONF_DIR
from resnet_lab.config import validate
from resnet_lab.train.run import build_trainer

CHOSEN = ("experiment", "model", "optimizer", "scheduler", "augmentation", "data")
OPTIONS = {group: sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")) for group in CHOSEN}
# What the command line sets in every combination: a key an experiment owns and one an optimizer brings.
COMMAND_LINE = {"trainer.epochs": 3, "scheduler.max_lr": 0.0123}


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() if key != "defaults" for k, v in leaves(child, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def file_values(group: str, option: str) -> dict[str, Any]:
    """Dotted keys a _global_-packaged file sets (experiments and their specialisations)."""
    path = CONF_DIR / group / f"{option}.yaml"
    return leaves(OmegaConf.to_container(OmegaConf.load(path))) if path.is_file() else {}


def expected_values(choice: dict[str, str]) -> dict[str, Any]:
    """What each layer sets, in precedence order: later layers win."""
    layers = [
        {f"scheduler.{k}": v for k, v in leaves(OmegaConf.to_container(OmegaConf.load(CONF_DIR / "scheduler" / f"{choice['scheduler']}.yaml"))).items()},
        file_values("optimizer", choice["optimizer"]),
        file_values("experiment", choice["experiment"]),
        file_values("experiment_model", f"{choice['experiment']}_{choice['model']}"),
        file_values("experiment_optimizer", f"{choice['experiment']}_{choice['optimizer']}"),
        file_values("experiment_scheduler", f"{choice['experiment']}_{choice['scheduler']}"),
        COMMAND_LINE,
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return merged


def combinations(experiment: str, model: str) -> list[dict[str, str]]:
    """The full product of the groups whose options layer values on each other (experiment, model,
    optimizer, scheduler: the specialisation files are keyed by their pairs), each combined with
    one augmentation x data pair in turn, so that every such pair meets every experiment and model.
    Augmentation and data options set no key another layer sets, so the product over them would
    add compositions but no new precedence case."""
    layered = list(itertools.product(OPTIONS["optimizer"], OPTIONS["scheduler"]))
    pairs = list(itertools.product(OPTIONS["augmentation"], OPTIONS["data"]))
    assert len(layered) >= len(pairs), "every augmentation x data pair is used"
    combos = [(*layered[i], *pairs[i % len(pairs)]) for i in range(len(layered))]
    return [dict(zip(CHOSEN, (experiment, model, *values))) for values in combos]


@pytest.mark.parametrize("experiment", OPTIONS["experiment"])
@pytest.mark.parametrize("model", OPTIONS["model"])
def test_every_layered_combination_composes_validates_and_keeps_the_precedence(experiment, model):
    """One experiment x model per test (so the two test processes share the compositions)."""
    combos = combinations(experiment, model)
    failures = []
    with initialize_config_dir(str(CONF_DIR)):
        for choice in combos:
            overrides = [f"{g}={o}" for g, o in choice.items()] + [f"{k}={v}" for k, v in COMMAND_LINE.items()]
            try:
                cfg = compose("train", overrides=overrides)
                validate(cfg)
            except Exception as error:  # noqa: BLE001  (every failure is collected and shown)
                failures.append(f"{' '.join(overrides)}: {type(error).__name__}: {str(error).splitlines()[0]}")
                continue
            for key, value in expected_values(choice).items():
                actual = OmegaConf.select(cfg, key)
                actual = OmegaConf.to_container(actual) if OmegaConf.is_config(actual) else getattr(actual, "name", actual)  # YAML names enum members
                if actual != value and not (isinstance(value, str) and str(actual) == value):
                    failures.append(f"{' '.join(overrides)}: {key}={actual!r}, expected {value!r}")
    assert not failures, f"{len(failures)} of {len(combos)} combinations:\n" + "\n".join(failures[:20])
    assert len(combos) == 3 * 4


def test_the_product_covers_every_option():
    assert [len(OPTIONS[g]) for g in CHOSEN] == [4, 2, 3, 4, 3, 2]


def test_an_experiments_values_for_other_optimizers_stay_out():
    """experiment=speedrun optimizer=adam: speedrun's SGD values (momentum, its LR) do not follow."""
    with initialize_config_dir(str(CONF_DIR)):
        cfg = compose("train", overrides=["experiment=speedrun", "optimizer=adam"])
    adam = OmegaConf.load(CONF_DIR / "optimizer" / "adam.yaml")
    assert "momentum" not in cfg.optimizer and cfg.scheduler.max_lr == adam.scheduler.max_lr
    assert cfg.trainer.epochs == 10 and cfg.scheduler.pct_start == 0.2, "speedrun's own values and its one-cycle shape stay"


LEARNERS = [["optimizer=sgd"], ["optimizer=adam"], ["optimizer=adamw"], ["experiment=seed_replica", "optimizer=adamw"]]


@pytest.mark.slow
@pytest.mark.parametrize("choice", LEARNERS, ids=[" ".join(c) for c in LEARNERS])
def test_each_optimizer_learns_at_its_own_values(choice, tmp_path):
    """No LR or decay given: each runs at what its option (and the experiment) brings. The
    options' LRs are meant for batches of hundreds, so this runs at batch 64 (not the tiny 8)."""
    root = write_image_folder(tmp_path / "images", train_per_class=128, test_per_class=16)
    cfg = compose_config(["data=image_folder", f"data.root={root}", *TINY, "data.batch_size=64", *choice, "trainer.epochs=4"])
    trainer, _, _ = build_trainer(validate(cfg))
    history = trainer.fit(4)
    assert history[-1].eval_acc >= 0.8, f"{choice}: {[round(m.eval_acc, 3) for m in history]} (chance is 1/3)"
