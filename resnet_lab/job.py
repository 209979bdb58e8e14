"""What a job knows of how it was launched, read from Hydra once by the entry points.

Below the entry points nothing asks Hydra where it runs: a run folder, a name for the tracker,
the overrides to repeat in a resume command and the job's slot among parallel jobs arrive as
this plain value, so that any piece can be driven from a notebook with `JobContext(run_dir)`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_lab.secrets import mask_secrets
from resnet_lab.trial import TrialAddress


@dataclass(frozen=True)
class JobContext:
    run_dir: Path
    name: str = "default"  # the job's overrides as one string (Hydra's override_dirname)
    sweep_dir: Path | None = None  # the multirun folder this job belongs to; None for a single run
    overrides: tuple[str, ...] = ()  # the command line's task overrides, secrets masked
    slot: tuple[int, int] | None = None  # (job number, jobs running at once) under a parallel launcher
    trial: TrialAddress | None = None  # the Optuna trial this job is, in a sweep
    choices: dict[str, str] = field(default_factory=dict)  # the option Hydra chose in each config group

    @classmethod
    def from_hydra(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        n_jobs = hydra_cfg.launcher.get("n_jobs") if multirun else None
        slot = None
        if isinstance(n_jobs, int) and n_jobs != 1:
            slot = (int(hydra_cfg.job.num), n_jobs if n_jobs > 0 else os.cpu_count() or 1)
        return cls(
            run_dir=Path(hydra_cfg.runtime.output_dir),
            name=hydra_cfg.job.override_dirname or "default",
            sweep_dir=Path(hydra_cfg.sweep.dir) if multirun else None,
            overrides=tuple(mask_secrets(o) for o in hydra_cfg.overrides.task),
            slot=slot,
            trial=_trial_address(hydra_cfg) if multirun else None,
            choices={group: str(option) for group, option in hydra_cfg.runtime.choices.items() if option is not None and not group.startswith("hydra/")},
        )

    def resume_command(self) -> str:
        """The command that continues this run in its folder with the same settings."""
        kept = [o for o in self.overrides if not o.startswith(("trainer.resume=", "trainer.overwrite=", "hydra.run.dir="))]
        return " ".join(["python -m resnet_lab.train", *kept, "trainer.resume=true", f"hydra.run.dir={self.run_dir}"])


def _trial_address(hydra_cfg: Any) -> TrialAddress | None:
    """An Optuna sweep's job runs in `<sweep dir>/<trial number>` (the sweeper sets the subdir),
    and the sweep folder's study.json, written before any job starts, names the study and its
    storage (absolute, a password masked); a grid multirun's job has neither."""
    subdir, study_file = str(hydra_cfg.sweep.subdir), Path(str(hydra_cfg.sweep.dir)) / "study.json"
    if not subdir.isdigit() or not study_file.is_file():
        return None
    study = json.loads(study_file.read_text())
    storage = study.get("storage")
    return TrialAddress(study_name=str(study["study_name"]), storage=None if storage is None else str(storage), number=int(subdir))
