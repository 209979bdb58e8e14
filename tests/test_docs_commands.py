"""Every `python -m resnet_lab.train` / `lr_find` command written in README.md and docs/ (those
without a placeholder to fill in) composes and passes validation, and a sweep also the sweeper's
pruning checks: a renamed group, option or key breaks this test, not a reader's first try. A
multirun's comma lists stand for their first value."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from resnet_lab import CONF_DIR
from resnet_lab.config import validate

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"^python -m resnet_lab\.(train|lr_find)\b(.*)$", re.MULTILINE)


def documented() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for module, rest in COMMAND.findall(page.read_text()):
            line = rest.split("  #")[0].strip()
            if "<" in line or "..." in line or line.endswith("\\") or "--" in line:
                continue
            found.append((f"{page.name}: python -m resnet_lab.{module}{rest.split('  #')[0]}", module, [a for a in shlex.split(line) if a != "-m"]))
    return found


def one_job(overrides: list[str]) -> list[str]:
    """A multirun's overrides as its first job has them (a comma list: its first value)."""
    job = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            job.append(f"{override.get_key_element()}={next(override.sweep_string_iterator())}")
        else:
            job.append(override.input_line)
    return job


CASES = documented()


def test_the_pages_hold_commands_to_check():
    assert len(CASES) >= 15 and any(page.startswith("README.md") for page, _, _ in CASES)


@pytest.mark.parametrize("page, module, overrides", CASES, ids=[case[0] for case in CASES])
def test_a_documented_command_composes_and_validates(page, module, overrides):
    with initialize_config_dir(str(CONF_DIR)):
        cfg = compose("train" if module == "train" else "lr_find", overrides=one_job(overrides), return_hydra_config=True)
    if module == "train":
        validate(cfg)
    if cfg.get("hparams_search") is not None:  # the sweeper's refusals that do not depend on the machine: a pruner with nothing to judge, ...
        from omegaconf import OmegaConf

        from resnet_lab.sweep.optuna_sweeper import _check_pruning

        directions = cfg.hydra.sweeper.direction
        pruner = OmegaConf.to_object(cfg.hparams_search.pruner)
        _check_pruning(pruner, cfg, [directions] if isinstance(directions, str) else list(directions), cfg.hydra.sweeper.storage)
