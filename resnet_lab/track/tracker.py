"""Weights & Biases tracking that can never take a run down.

Every call into wandb is guarded: the first failure (not installed, no network, disk full) logs
one warning and turns the tracker off, and training and its local files carry on untouched.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable, TypeVar, cast

from resnet_lab.config.schema import LoggerConfig, WandbConfig, WandbMode
from resnet_lab.job import JobContext

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: "Tracker", *args: Any, **kwargs: Any) -> Any:
        if self.run is None:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            log.warning("W&B tracking stopped (%s: %s); training and local files continue", type(error).__name__, error)
            self._abandon()
            return None

    return wrapper  # type: ignore[return-value]


class Tracker:
    """One W&B run per job. With logger=none (or after a failure) every method is a no-op."""

    def __init__(self, run: Any = None) -> None:
        self.run = run

    @classmethod
    def start(cls, cfg: LoggerConfig, run_dir: Path, config: dict, job_type: str, name: str, group: str | None) -> "Tracker":
        if not isinstance(cfg, WandbConfig):  # logger=none
            return cls()
        try:
            import wandb

            run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                mode=cast(WandbMode, cfg.mode),  # one of WANDB_MODES: validated
                dir=str(run_dir),
                config=config,
                job_type=job_type,
                name=name,
                group=group,
                tags=list(cfg.tags),
                reinit="finish_previous",
                # W&B's system metadata includes the process's command line, where a storage URL
                # with a password may be; the device and versions are in the run's summary.
                settings=wandb.Settings(x_disable_meta=True),
            )
        except Exception as error:
            log.warning("W&B could not start (%s: %s); training continues without tracking", type(error).__name__, error)
            return cls()
        return cls(run)

    @property
    def active(self) -> bool:
        return self.run is not None

    @_guarded
    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        self.run.log(values, step=step)

    @_guarded
    def log_images(self, images: dict[str, Path], step: int | None = None) -> None:
        import wandb

        present = {key: wandb.Image(str(path)) for key, path in images.items() if path.is_file()}
        if present:
            self.run.log(present, step=step)

    @_guarded
    def log_table(self, key: str, columns: list[str], rows: list[list[Any]], image_columns: tuple[str, ...] = (), step: int | None = None) -> None:
        import wandb

        table = wandb.Table(columns=columns)
        for row in rows:
            table.add_data(*[wandb.Image(value) if column in image_columns else value for column, value in zip(columns, row)])
        self.run.log({key: table}, step=step)

    @_guarded
    def log_artifact(self, name: str, kind: str, path: Path) -> None:
        import wandb

        artifact = wandb.Artifact(name, type=kind)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def use_model_of(self, training_run_id: str) -> bool:
        """Declares the model artifact that training run `training_run_id` (same entity and
        project) logged as this run's input, so W&B's lineage links evaluation to model. Only an
        online run can: W&B resolves artifacts on its server. A failure here (the training run was
        never synced, no network) warns and leaves this run tracking; returns whether it linked."""
        if self.run is None or self.run.offline:
            return False
        try:
            import wandb

            training = wandb.Api().run(f"{self.run.entity}/{self.run.project}/{training_run_id}")
            models = [artifact for artifact in training.logged_artifacts() if artifact.type == "model"]
            for artifact in models:
                self.run.use_artifact(artifact)
        except Exception as error:
            log.warning("W&B could not link the model of run %s (%s: %s); the evaluation is tracked without it", training_run_id, type(error).__name__, error)
            return False
        return bool(models)

    @_guarded
    def summarise(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    @property
    def run_dir(self) -> str | None:
        return getattr(self.run, "dir", None) if self.run is not None else None

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as error:
            log.warning("W&B run did not finish cleanly (%s: %s); local files are complete", type(error).__name__, error)
        self.run = None

    @_guarded
    def link_into(self, folder: Path) -> None:
        """A link to this run's W&B folder inside `folder`: a sweep's jobs each keep their run in
        <job>/wandb/, and <sweep dir>/wandb/ shows them all at once to `wandb leet` and `wandb sync`."""
        run_folder = Path(self.run.dir).parent
        folder.mkdir(parents=True, exist_ok=True)
        (folder / run_folder.name).symlink_to(os.path.relpath(run_folder, folder), target_is_directory=True)

    def _abandon(self) -> None:
        run, self.run = self.run, None
        try:
            run.finish(exit_code=1, quiet=True)
        except Exception:
            log.debug("W&B run could not be finished after a tracking failure", exc_info=True)


def build_tracker(cfg: LoggerConfig, job: JobContext, config: dict, job_type: str) -> Tracker:
    """Names the run after the job's overrides and groups multirun/sweep jobs by sweep directory."""
    group = None if job.sweep_dir is None else str(job.sweep_dir)
    config = {**config, "overrides": list(job.overrides)}
    tracker = Tracker.start(cfg, job.run_dir, config, job_type, job.name, group)
    if job.sweep_dir is not None:
        tracker.link_into(job.sweep_dir / "wandb")
    return tracker
