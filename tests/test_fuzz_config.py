"""Property-based: random override lists over the real groups and keys either compose into a run
that builds and trains a step, or fail with a one-line user error. Never anything else."""

from __future__ import annotations

import dataclasses
import os
import typing
from enum import Enum

import pytest
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from conftest import TINY, compose_config, write_image_folder
from resnet_lab.config import ConfigError, validate
from resnet_lab.config.schema import SCHEMAS
from resnet_lab.messages import one_line
from resnet_lab.train.run import build_trainer

FIXED = ("format", "root", "download", "cache_dir", "file", "_target_", "_partial_", "kind", "mode", "project", "entity", "device", "image_size")
# Keys whose legal values could make a single fuzzed step slow; drawn from small ranges.
SMALL = {"width_multiplier": (0.05, 0.25), "batch_size": (1, 64), "eval_batch_size": (1, 128), "epochs": (1, 50), "num_iter": (10, 50)}
JUNK = st.sampled_from(["abc", "-1", "0", "1e9", "[1,2]", "null", "true", "''", "{a: 1}", "-0.5", "2.5", "nan"])


def key_values() -> list[tuple[str, st.SearchStrategy]]:
    pairs = []
    for group, options in SCHEMAS.items():
        fields = {f.name: f for schema in options.values() for f in dataclasses.fields(schema)}
        for name, field in fields.items():
            if name in FIXED:
                continue
            pairs.append((f"{group}.{name}", st.one_of(_legal(name, field.type), JUNK)))
    return pairs


def _legal(name: str, hint: object) -> st.SearchStrategy:
    text = str(hint)
    if name in SMALL:
        low, high = SMALL[name]
        numbers = st.integers(low, high) if isinstance(low, int) else st.floats(low, high)
        return numbers.map(str)
    if "bool" in text:
        return st.sampled_from(["true", "false"])
    if "int" in text and "float" not in text:
        return st.integers(-3, 100).map(str)
    if "float" in text:
        return st.floats(-1.0, 2.0, allow_nan=False).map(lambda x: f"{x:.4g}")
    if "List" in text or "list" in text:
        return st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4).map(lambda v: "[" + ",".join(f"{x:.3g}" for x in v) + "]")
    enum = next((a for a in typing.get_args(hint) + (hint,) if isinstance(a, type) and issubclass(a, Enum)), None)
    if enum is not None:
        return st.sampled_from([m.value for m in enum])
    return st.text("abcdefghijklmnopqrstuvwxyz._0123456789", min_size=1, max_size=12)


GROUP_CHOICES = [(group, st.sampled_from([*options, "nonexistent", "Sgd"])) for group, options in SCHEMAS.items() if group not in ("data", "logger")]
PAIRS = key_values()


@st.composite
def override_lists(draw) -> list[str]:
    overrides = []
    for group, choices in draw(st.lists(st.sampled_from(GROUP_CHOICES), max_size=2, unique_by=lambda g: g[0])):
        overrides.append(f"{group}={draw(choices)}")
    for key, values in draw(st.lists(st.sampled_from(PAIRS), max_size=5, unique_by=lambda p: p[0])):
        overrides.append(f"{key}={draw(values)}")
    if draw(st.booleans()):
        overrides.append(draw(st.sampled_from(["trainer.speed=1", "+surprise=2", "model.depth=18", "optimizer.lr=0.1"])))
    return overrides


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("fuzz") / "im", train_per_class=8, test_per_class=4)


# The default profile replays the same 60 cases on every run, so CI cannot turn red by chance;
# HYPOTHESIS_PROFILE=explore draws 2,000 fresh ones when hunting for new failures.
settings.register_profile("default", max_examples=60, derandomize=True)
settings.register_profile("explore", max_examples=2000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def test_fuzzed_overrides_compose_and_train_or_fail_in_one_line(fuzz_root):
    """Every fuzzed case trains a step or is refused in one line; and the cases exercise both
    outcomes, counted within this test (a fuzzer that only ever rejects, or accepts, proves little)."""
    outcomes = {"rejected": 0, "trained": 0}

    @settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(overrides=override_lists())
    def case(overrides):
        base = ["data=image_folder", f"data.root={fuzz_root}", *TINY]
        try:
            run = validate(compose_config([*base, *overrides]))
            trainer, _, _ = build_trainer(run)
            trainer.train_epoch(1, run.trainer.epochs)
        except (ConfigError, HydraException, OmegaConfBaseException) as error:
            message = one_line(error)
            assert message and "\n" not in message and "Traceback" not in message
            outcomes["rejected"] += 1
            return
        outcomes["trained"] += 1

    case()
    # Most fuzzed lists hold a junk value somewhere, so trained cases are the rarer kind.
    assert outcomes["rejected"] >= 10 and outcomes["trained"] >= 5, outcomes
    print(f"fuzzed configurations: {sum(outcomes.values())} ({outcomes})")
