"""Hydra callbacks of every multirun: a sweep folder of its own, and the report when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from resnet_lab.config.plain import plain_dict

log = logging.getLogger(__name__)


class OwnSweepDirCallback(Callback):
    """A time-named sweep folder (`multirun/<date>/<time>`) is claimed with an exclusive mkdir:
    a multirun or sweep worker that starts in the same second as another gets `<time>-2`,
    `<time>-3`..., never the other's folder. A folder named on the command line is used as given
    (workers may share it on purpose: each Optuna trial has its own `<trial number>` subfolder).
    Either way the jobs get it as an absolute path: a launcher's job (a Ray task) may run in
    another working directory, where a relative folder is another folder."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        raw = str(plain_dict(config.hydra.sweep, resolve=False)["dir"])
        wanted = Path(str(config.hydra.sweep.dir)).absolute()
        claimed = claim_folder(wanted) if "${now:" in raw else wanted
        if str(claimed) == raw:
            return
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.sweep.dir = str(claimed)
            # Each job's config is recomposed from these overrides: it must see the same folder.
            config.hydra.overrides.hydra = [*config.hydra.overrides.hydra, f"hydra.sweep.dir='{claimed}'"]


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
