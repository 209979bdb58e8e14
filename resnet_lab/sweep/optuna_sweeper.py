"""hydra-optuna-sweeper, extended in three thin ways:

* the max_lr window is centred on an LR range test (a named lr_finder.json, the suggestion the
  study stored on its first invocation, or a test run now into the sweep directory);
* `n_trials` is the study's total: an invocation launches only what is missing, so the same
  command run again continues the study instead of adding n_trials more;
* each trial records its run directory and, when it fails, the one-line reason.

Selected by `hydra.sweeper._target_` in conf/hparams_search/optuna.yaml; resnet_lab.cli registers
it with Hydra's plugin registry before every app starts.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Sequence

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from resnet_lab.cli import one_line
from resnet_lab.config.schema import HParamsSearchConfig
from resnet_lab.optim.lr_range import read_suggestion
from resnet_lab.files import write_json

log = logging.getLogger(__name__)

SUGGESTION_ATTR = "lr_finder_suggestion"
WORKER_ATTR = "worker"
WORKER = f"{socket.gethostname()}:{os.getpid()}"
STUDY_FILE = "study.json"
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


JOURNAL_PREFIX = "journal:///"


def absolute_storage(storage: str | None) -> str | None:
    """SQLite and journal URLs made absolute (their folder created), so every invocation and
    every worker finds the same file."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if storage and storage.startswith(prefix):
            path = Path(storage[len(prefix) :]).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"{prefix}{path}"
    return storage


def open_storage(url: str | None) -> optuna.storages.BaseStorage | None:
    """Optuna storage for a URL: `journal:///<file>` for Optuna's JournalStorage on a file (file
    locks, no server: recommended for several workers on one machine), else any SQLAlchemy URL.
    Workers starting together race to create a new database's tables; the loser retries."""
    if url is None:
        return None
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
    from sqlalchemy.exc import IntegrityError, OperationalError

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    attempts = 10
    for attempt in range(1, attempts + 1):
        try:
            # Wrapped once here: every study object of this process then shares one cache;
            # a separate cache per load_study goes stale ("Record does not exist").
            return optuna.storages.get_storage(optuna.storages.RDBStorage(url, engine_kwargs=engine))
        except (IntegrityError, OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_space(low: float, high: float, grid_points: int | None) -> str:
    """A log-uniform interval, or for the grid sampler `grid_points` log-spaced choices."""
    if grid_points is None:
        return f"tag(log, interval({low:.6g}, {high:.6g}))"
    ratio = (high / low) ** (1 / (grid_points - 1))
    return "choice(" + ", ".join(f"{low * ratio**i:.4g}" for i in range(grid_points)) + ")"


class TrialRecordingLauncher(Launcher):
    """Wraps the real launcher; after each batch, tags the batch's trials with run dir and failure.

    The sweeper hands over the trials it just asked for (`pending`) rather than the launcher
    finding them in the study: with several workers on one study, another worker's freshly
    asked trial has no parameters yet and would match any job."""

    def __init__(self, inner: Launcher) -> None:
        self.inner = inner
        self.pending: list[optuna.trial.Trial] = []

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.inner.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        handles: list[optuna.trial.Trial | None] = list(self.pending)
        handles += [None] * (len(job_overrides) - len(handles))
        self.pending = []
        for handle in handles:
            _tag(handle, WORKER_ATTR, WORKER)
        returns = self.inner.launch(job_overrides, initial_job_idx)
        for handle, result in zip(handles, returns):
            if result.hydra_cfg is not None:
                _tag(handle, "run_dir", str(result.hydra_cfg.hydra.runtime.output_dir))
            if result.status is JobStatus.FAILED:
                try:
                    result.return_value
                except Exception as error:
                    _tag(handle, "fail_reason", one_line(error))
        return returns


def _tag(handle: optuna.trial.Trial | None, key: str, value: object) -> None:
    """Record a trial attribute; bookkeeping must never end a sweep, so failures only warn."""
    if handle is None:
        return
    try:
        handle.set_user_attr(key, value)
    except Exception as error:
        log.warning("could not record %s on trial %d: %s", key, handle.number, error)


class ResumableOptunaSweeper(OptunaSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        impl = self.sweeper
        self.storage_url = absolute_storage(impl.storage)
        impl.storage = open_storage(self.storage_url)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        launcher = TrialRecordingLauncher(impl.launcher)
        impl.launcher = launcher
        configure = impl._configure_trials

        def configure_and_remember(trials: list[optuna.trial.Trial], *args: Any, **kwargs: Any) -> Any:
            launcher.pending = list(trials)
            return configure(trials, *args, **kwargs)

        impl._configure_trials = configure_and_remember

    def sweep(self, arguments: list[str]) -> None:
        impl = self.sweeper
        config = impl.config
        search: HParamsSearchConfig = OmegaConf.to_object(config.hparams_search)
        search.check("hparams_search")
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=impl.study_name, storage=impl.storage, sampler=impl.sampler, direction="maximize", load_if_exists=True
        )

        if search.max_lr_bounds:
            low, high = search.max_lr_bounds
            suggestion = None
        else:
            suggestion = self._suggestion(search, study, sweep_dir)
            low, high = suggestion / search.lr_low_factor, suggestion * search.lr_high_factor
            log.info("LR-finder suggestion %.4g -> max_lr in [%.4g, %.4g]", suggestion, low, high)
        space = {
            "scheduler.max_lr": _log_space(low, high, search.grid_points if self._is_grid() else None),
            "optimizer.weight_decay": _log_space(
                search.weight_decay_low, search.weight_decay_high, search.grid_points if self._is_grid() else None
            ),
        }
        impl.params = OmegaConf.merge(impl.params or {}, space)
        self._save_config(config, sweep_dir, space, [low, high])
        write_json(
            sweep_dir / STUDY_FILE,
            {"study_name": impl.study_name, "storage": self.storage_url, "lr_finder_suggestion": suggestion, "params": space},
        )

        # One batch at a time, recounting the shared study before each: finished trials (all
        # invocations) plus trials other live workers are running. Workers that share a study
        # therefore stop together at n_trials (two that count at the same instant may each
        # start the last trial: an overshoot of at most workers - 1).
        total, launched = impl.n_trials, 0
        while True:
            self._fail_orphaned_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state.is_finished() and not t.user_attrs.get("interrupted") for t in trials)
            in_flight = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
            remaining = total - finished - in_flight
            if launched == 0 or remaining <= 0:
                log.info("study %s: %d finished, %d running elsewhere, of %d; launching %d more", impl.study_name, finished, in_flight, total, max(0, remaining))
            if remaining <= 0:
                break
            self._reseed(config, offset=len(trials))
            impl.n_trials = min(remaining, impl.n_jobs)
            try:
                impl.sweep(arguments)
            except ValueError:
                # The plugin ends each call by reporting the study's best trial, which fails
                # while every finished trial has failed; the batch itself was run and recorded.
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                    raise
            launched += impl.n_trials
        impl.n_trials = total

    @staticmethod
    def _fail_orphaned_trials(study: optuna.Study) -> None:
        """A RUNNING trial whose worker process on this host is gone was interrupted (killed
        sweep): mark it FAIL with the reason and do not count it, so another trial replaces it.
        Trials of live workers, or of other hosts, are left alone."""
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
            worker_host, _, pid = worker.rpartition(":")
            if worker_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            handle = optuna.trial.Trial(study, trial._trial_id)
            handle.set_user_attr("interrupted", True)
            handle.set_user_attr("fail_reason", f"interrupted: its sweep process {pid} ended before the trial finished")
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            log.warning("trial %d was interrupted (process %s is gone): marked FAIL; a new trial replaces it", trial.number, pid)

    def _is_grid(self) -> bool:
        sampler = self.sweeper.sampler
        return isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler

    def _save_config(self, config: DictConfig, sweep_dir: Path, space: dict[str, str], bounds: list[float]) -> None:
        """multirun.yaml as Hydra's basic sweeper writes it, showing the search space actually
        used; the live config stays as composed, since Hydra checks each job's hydra.sweeper
        against it."""
        saved = OmegaConf.to_container(config, resolve=False)
        saved["hydra"]["sweeper"]["params"].update(space)
        saved["hydra"]["sweeper"]["storage"] = self.storage_url
        saved["hparams_search"]["max_lr_bounds"] = [float(f"{b:.6g}") for b in bounds]
        OmegaConf.save(OmegaConf.create(saved), sweep_dir / "multirun.yaml")

    def _suggestion(self, search: HParamsSearchConfig, study: optuna.Study, sweep_dir: Path) -> float:
        if search.lr_finder_json:
            value = read_suggestion(search.lr_finder_json)
        elif SUGGESTION_ATTR in study.user_attrs:
            value = float(study.user_attrs[SUGGESTION_ATTR])
            log.info("reusing the study's LR-finder suggestion %.4g", value)
            return value
        else:
            from resnet_lab.train.lr_auto import run_range_test

            config = self.sweeper.config
            task_config = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
            value = run_range_test(task_config, sweep_dir / "lr_finder").suggestion
        study.set_user_attr(SUGGESTION_ATTR, value)
        return value

    def _reseed(self, config: DictConfig, offset: int) -> None:
        """A continued study must not replay the first invocation's random draws."""
        sampler_cfg = config.hydra.sweeper.sampler
        if offset == 0 or sampler_cfg.get("_partial_") or sampler_cfg.get("seed") is None:
            return
        options: dict[str, Any] = OmegaConf.to_container(sampler_cfg, resolve=True)
        # Spaced out so that workers started with neighbouring seeds never share a draw.
        options["seed"] = int(options["seed"]) + 10007 * offset
        self.sweeper.sampler = instantiate(options, _execution_whitelist_=SAMPLER_WHITELIST)
