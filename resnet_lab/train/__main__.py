"""`python -m resnet_lab.train [overrides]`: one run, or a multirun / sweep with `-m`; under
torchrun with trainer.strategy=ddp, one run over several processes."""

from __future__ import annotations

import sys
from contextlib import nullcontext

from omegaconf import DictConfig

from resnet_lab.cli import run_app
from resnet_lab.config import validate
from resnet_lab.errors import TrialPruned
from resnet_lab.job import JobContext
from resnet_lab.run_folder import held
from resnet_lab.train.torchrun import process_group, world
from resnet_lab.trial import Pruned


def train(cfg: DictConfig) -> float | tuple[float, ...] | Pruned:
    run = validate(cfg)  # a bad setting is refused before torch and the data are loaded
    from resnet_lab.train.run import run_training

    job = JobContext.from_hydra()
    # A single run's folder is held from before Hydra wrote into it (run_folder.RunFolderGuard).
    with held(job.run_dir) if world().is_main else nullcontext():
        try:
            return run_training(run, job).for_sweep(run.hparams_search.objectives if run.hparams_search is not None else ())
        except TrialPruned as pruned:
            if job.trial is None:
                raise
            return Pruned(pruned.epoch, pruned.value)  # the sweeper tells its trial PRUNED


def main() -> None:
    with process_group(sys.argv):
        run_app(train, config_name="train")


if __name__ == "__main__":
    main()
