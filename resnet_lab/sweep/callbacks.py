"""Hydra callbacks and resolvers of every multirun: a sweep folder of its own, and the report when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

CLAIM_RESOLVER = "resnet_lab_claim"


def register_folder_claim() -> None:
    """`${resnet_lab_claim:<folder>}` (the default `hydra.sweep.dir`) names a folder this process
    has just created. Two multiruns or sweep workers started in the same second get `<time>` and
    `<time>-2`, never the same folder. The resolver is cached, and Hydra copies the master
    config's resolver cache into every job's config, so each job sees the folder claimed once."""
    OmegaConf.register_resolver(CLAIM_RESOLVER, _claimed, use_cache=True, replace=True)


def _claimed(wanted: str) -> str:
    return str(claim_folder(Path(wanted).absolute()))


def claim_folder(wanted: Path) -> Path:
    """`wanted`, or the first free `wanted-N`, created here so that no other process can take it."""
    wanted.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = wanted, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = wanted.with_name(f"{wanted.name}-{n}")


class SweepReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from resnet_lab.sweep.report import report_sweep_dir

        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / "multirun.yaml").is_file() or (sweep_dir / "study.json").is_file():
            return  # refused before it started; or an Optuna sweep, which writes its own report from the live study
        try:
            report_sweep_dir(sweep_dir)
        except Exception as error:
            log.warning("could not write the sweep report for %s: %s", sweep_dir, error)
