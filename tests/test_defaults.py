"""One home for every default: the YAML option a user reads. The schemas state types and rules
only, every option sets every key of its schema, and no factory states a value of its own that
differs from its YAML."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from omegaconf import MISSING, OmegaConf

from resnet_lab import CONF_DIR
from resnet_lab.config.schema import OPTIONAL_SCHEMAS, SCHEMAS

OPTIONS = [(group, option, schema) for group, options in {**SCHEMAS, **OPTIONAL_SCHEMAS}.items() for option, schema in options.items()]
IDS = [f"{group}={option}" for group, option, _ in OPTIONS]
STRUCTURAL = {"_partial_"}  # how Hydra instantiates, not a value a user chooses
# Keys whose default another group's option brings: the peak LR comes with the optimizer.
BROUGHT = {"scheduler": {"max_lr": "optimizer"}}


def option_values(group: str, option: str) -> dict[str, Any]:
    """The option's own keys and values as written (options packaged at _global_ nest their group)."""
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    node.pop("defaults", None)
    return node[group] if isinstance(node.get(group), dict) else node


@pytest.mark.parametrize(("group", "option", "schema"), OPTIONS, ids=IDS)
def test_the_schema_states_no_value(group, option, schema):
    stated = {
        f.name: f.default
        for f in dataclasses.fields(schema)
        if f.name not in STRUCTURAL and (f.default != MISSING or f.default_factory is not dataclasses.MISSING)
    }
    assert not stated, f"{schema.__name__} states defaults {stated}; they belong in conf/{group}/{option}.yaml"


@pytest.mark.parametrize(("group", "option", "schema"), OPTIONS, ids=IDS)
def test_the_option_sets_every_key_of_its_schema(group, option, schema):
    keys = {f.name for f in dataclasses.fields(schema)} - STRUCTURAL - set(BROUGHT.get(group, {}))
    assert set(option_values(group, option)) == keys


@pytest.mark.parametrize("optimizer", sorted(SCHEMAS["optimizer"]))
def test_each_optimizer_brings_the_peak_lr(optimizer):
    node = OmegaConf.load(CONF_DIR / "optimizer" / f"{optimizer}.yaml")
    assert node.scheduler.max_lr > 0 and set(node.scheduler) == {"max_lr"}


def _callables(target: str) -> list[Any]:
    """The factory a `_target_` names and, when it builds one of our classes, that class."""
    module, _, name = target.rpartition(".")
    factory = getattr(importlib.import_module(module), name)
    built = inspect.signature(factory).return_annotation
    if isinstance(built, str):
        built = getattr(importlib.import_module(module), built, None)
    return [factory] + ([built] if inspect.isclass(built) and built.__module__.startswith("resnet_lab") else [])


TARGETED = [(g, o) for g, o, _ in OPTIONS if str(option_values(g, o).get("_target_", "")).startswith("resnet_lab.")]


@pytest.mark.parametrize(("group", "option"), TARGETED, ids=[f"{g}={o}" for g, o in TARGETED])
def test_factories_state_no_other_value(group, option):
    values = option_values(group, option)
    for code in _callables(values["_target_"]):
        for name, parameter in inspect.signature(code).parameters.items():
            if name in values and parameter.default is not inspect.Parameter.empty:
                assert parameter.default == values[name], (
                    f"{code.__qualname__}({name}={parameter.default!r}) but conf/{group}/{option}.yaml says {values[name]!r}"
                )


def extends_a_sibling(group: str, option: str) -> bool:
    """An option built on another of its group (hparams_search=pareto on optuna) changes a few
    keys of that option, whose schema and keys are checked above."""
    siblings = {p.stem for p in (CONF_DIR / group).glob("*.yaml")} - {option}
    return any(isinstance(d, str) and d in siblings for d in OmegaConf.load(CONF_DIR / group / f"{option}.yaml").get("defaults", []))


def test_every_option_file_is_checked():
    on_disk = {(p.parent.name, p.stem) for p in Path(CONF_DIR).glob("*/*.yaml") if p.parent.name in SCHEMAS or p.parent.name in OPTIONAL_SCHEMAS}
    assert {(g, o) for g, o in on_disk if not extends_a_sibling(g, o)} == {(g, o) for g, o, _ in OPTIONS}
    assert ("hparams_search", "pareto") in on_disk and extends_a_sibling("hparams_search", "pareto")
