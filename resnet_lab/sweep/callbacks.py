"""A Hydra callback that writes the sweep report when any multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from resnet_lab.sweep.report import report_sweep_dir

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            report_sweep_dir(sweep_dir)
        except Exception as error:
            log.warning("could not write the sweep report for %s: %s", sweep_dir, error)
