"""An Optuna sweeper on Hydra's public Sweeper interface, with its own ask -> launch -> tell loop.

It reads hydra-optuna-sweeper's config (the same keys, samplers and search-space grammar, on any
Hydra app) and adds what a resumable research sweep needs:

* `n_trials` is the study's total over every invocation and worker: the same command run again
  continues the study to it; workers racing for the last trial run it once (liveness.py counts);
* each trial runs in `<sweep dir>/<trial number>` and records that folder, its worker and, when it
  fails, the one-line reason; a job stopped by its pruner is told PRUNED;
* trials carry a heartbeat, so a trial of a dead process (on any machine) is taken over;
* jobs learn the study's name and URL from their own overrides (a password masked);
* on resnet_lab's config (which has `hparams_search`): the max_lr window from an LR range test,
  one search space per study, pruning, `hparams_search.workers` (sweep/workers.py), the report.

Only public interfaces of Hydra (Sweeper, Plugins.instantiate_launcher, the override parser),
hydra-optuna-sweeper (its config) and Optuna (create_study, ask, tell, samplers) are used.
Selected by `hydra.sweeper._target_`; resnet_lab.cli registers it, and Optuna is imported only
once a sweep runs.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from resnet_lab.config.plain import plain_dict
from resnet_lab.config.schema import HParamsSearchConfig, Objective, OptimizerConfig, PrunerConfig, PrunerKind
from resnet_lab.errors import ConfigError, ResnetLabError
from resnet_lab.files import write_json
from resnet_lab.messages import one_line
from resnet_lab.run_folder import finished_outputs, remove_empty_folders
from resnet_lab.secrets import MASK, has_secret, mask_secrets
from resnet_lab.sweep import liveness
from resnet_lab.sweep.report import from_study, write_report
from resnet_lab.sweep.schedule_halving import rungs
from resnet_lab.sweep.search_space import SearchSpace
from resnet_lab.trial import LR_KEY, Pruned, live_trials, promoted

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

SUGGESTION_ATTR = "lr_finder_suggestion"
SELECTION_ATTR = "selected_on"
SPACE_ATTR = "search_space"
STUDY_FILE = "study.json"
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")
RESEED_STRIDE = 10007  # a continued study's seed moves by this per trial it holds: workers' seeds never meet


class ResumableOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        plots: bool = True,
    ) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate} is not allowed: a fraction in [0, 1]")
        if n_trials < 1 or n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs} are not allowed: integers >= 1")
        self.sampler_config, self.storage, self.study_name = sampler, storage, study_name
        self.directions = [
            str(getattr(d, "name", d)) for d in (direction if isinstance(direction, Sequence) and not isinstance(direction, str) else [direction])
        ]
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.custom_search_space = custom_search_space
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.plots = plots
        self.job_idx = 0
        self.rungs: list[int] = []  # schedule halving's schedule lengths; empty: one run per trial
        self.promoted: list[tuple[optuna.trial.Trial, int]] = []  # (trial, rung index) to run next

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from resnet_lab.study_storage import absolute_storage, open_storage

        self.task_config = config
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.created_file: Path | None = None
        try:
            self.search = _checked_search(config, self.directions, self.storage)
            self.rungs = _rungs(self.search, config)
            self.storage_url = absolute_storage(self.storage)
            self.created_file = _new_storage_file(self.storage_url)
            self.opened = open_storage(self.storage_url)
        except ResnetLabError:
            self._discard_unstarted()
            raise
        self.storage_url = None if self.storage_url is None else mask_secrets(self.storage_url)
        _keep_password_out_of_saved_configs(config)
        self.job_launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        search, sweep_dir = self.search, self.sweep_dir
        workers = search.workers if search is not None else 1
        study = None
        try:
            if workers > 1:
                sweep_dir.mkdir(parents=True, exist_ok=True)
                self._share_storage(sweep_dir)
            study = optuna.create_study(study_name=self.study_name, storage=self.opened, directions=self.directions, load_if_exists=True)
            if search is not None:
                _keep_one_selection(study, selection(float(self.task_config.data.val_fraction), int(self.task_config.data.split_seed)))
            window, bounds, suggestion = self._lr_window(search, study, sweep_dir) if search is not None else ({}, None, None)
            space = _parse([f"{k}={v}" for k, v in {**self.params, **window}.items()] + list(arguments))
            total = self._prepare_sampler(study, space)
            if workers > 1:
                workers = _workers_to_start(workers, total - liveness.counted(study))
        except ResnetLabError:
            if study is None or not study.get_trials(deepcopy=False):
                self._discard_unstarted()
            raise
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._save_config(sweep_dir, window, bounds)
        write_json(sweep_dir / STUDY_FILE, {"study_name": study.study_name, "storage": self.storage_url, "lr_finder_suggestion": suggestion, "params": window})
        try:
            if workers > 1:
                self._run_workers(workers, sweep_dir, study)
            else:
                with liveness.Heartbeat() as self.heartbeat:
                    self._run_to_total(study, space, total)
        except KeyboardInterrupt:
            log.warning("sweep interrupted: its finished trials are kept in the study; run the same command again to continue it")
            raise
        finally:
            if workers > 1:
                self._save_config(sweep_dir, window, bounds)  # the workers saved their own settings there
            try:
                write_report(from_study(study, sweep_dir, suggestion), study, plots=self.plots)
            except Exception as error:
                log.warning("could not write the sweep report for %s: %s", sweep_dir, one_line(error))
        _write_results(study, sweep_dir)

    def _prepare_sampler(self, study: optuna.Study, space: SearchSpace) -> int:
        """The configured sampler on the study (the grid's values filled in, a continued study's
        seed moved on); returns the study's total (a grid ends when its points are used up)."""
        from resnet_lab.sweep.search_space import grid

        options = plain_dict(self.sampler_config)
        held = len(study.get_trials(deepcopy=False))
        if held and options.get("seed") is not None:
            options["seed"] = int(options["seed"]) + RESEED_STRIDE * held  # a continued study must not replay the first draws
        sampler = instantiate(options, _execution_whitelist_=SAMPLER_WHITELIST)
        total = self.n_trials
        if self.is_grid():
            points = grid(space.distributions)
            sampler = sampler(points)
            total = min(total, math.prod(len(v) for v in points.values()))
        study.sampler = sampler
        return total

    def is_grid(self) -> bool:
        return str(self.sampler_config.get("_target_", "")) == "optuna.samplers.GridSampler"

    def _run_to_total(self, study: optuna.Study, space: SearchSpace, total: int) -> None:
        """Batches of n_jobs trials until the study holds `total` counted trials (all invocations
        and workers), recounting before each; a grid also ends when its points are used up."""
        import optuna

        first = True
        while True:
            trials = study.get_trials(deepcopy=False)
            taken = set(liveness.take_over_dead_trials(study, trials))
            held = sum(liveness.counts(t) for t in trials if t.number not in taken)
            running = held - sum(liveness.counts(t, running=False) for t in trials)
            remaining = total - held
            if first:
                log.info(
                    "study %s: %d finished, %d running elsewhere, of %d; launching %d more", study.study_name, held - running, running, total, max(0, remaining)
                )
                if remaining <= 0:
                    log.warning(
                        "nothing to run: study '%s' already has %d of hydra.sweeper.n_trials=%d trials. To continue it, raise "
                        "hydra.sweeper.n_trials; to start a new study, set hydra.sweeper.study_name to a new name",
                        study.study_name,
                        held,
                        total,
                    )
            first = False
            exhausted = isinstance(study.sampler, optuna.samplers.GridSampler) and study.sampler.is_exhausted(study)
            if (remaining <= 0 or exhausted) and not self.promoted:
                return
            going_on, self.promoted = self.promoted[: self.n_jobs], self.promoted[self.n_jobs :]
            wanted = 0 if exhausted else max(0, min(remaining, self.n_jobs - len(going_on)))
            asked = _within_total(study, [study.ask() for _ in range(wanted)], total, trials, taken)
            rung = {trial.number: index for trial, index in going_on} | {trial.number: 0 for trial in asked}
            if going_on or asked:
                self._run_batch(study, space, [trial for trial, _ in going_on] + asked, rung if self.rungs else None)

    def _run_batch(self, study: optuna.Study, space: SearchSpace, trials: list[optuna.trial.Trial], rung: dict[int, int] | None = None) -> None:
        """Draw each trial's values, launch the batch, tell each result. With schedule halving,
        `rung` gives each trial's rung: its job trains that rung's complete schedule."""
        import optuna

        epochs = {number: self.rungs[index] for number, index in (rung or {}).items()}
        try:
            overrides = [self._job_overrides(study, space, trial, epochs.get(trial.number)) for trial in trials]
        except Exception as error:
            for trial in trials:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise ConfigError(f"the search space cannot be drawn: {one_line(error)}") from error
        try:
            # A promoted trial waiting for its next rung is alive too: it beats with the batch.
            with self.heartbeat.running(trials + [t for t, _ in self.promoted]), live_trials({self._folder(t.number, epochs.get(t.number)): t for t in trials}):
                returns = self.job_launcher.launch(overrides, initial_job_idx=self.job_idx)
        except BaseException:
            for trial in trials:  # an interrupt or a launcher failure: these trials did not finish
                study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                study.set_user_attr(liveness.interrupted_key(trial.number), "interrupted: the sweep stopped before the trial finished")
            raise
        self.job_idx += len(returns)
        failures = [
            reason for trial, result in zip(trials, returns) if (reason := self._tell(study, trial, result, (rung or {}).get(trial.number))) is not None
        ]
        if failures and len(failures) / len(returns) > self.max_failure_rate:
            raise ResnetLabError(
                f"{len(failures)} of {len(returns)} trials of a batch failed, more than hydra.sweeper.max_failure_rate={self.max_failure_rate}: {failures[0]}"
            )

    def _folder(self, number: int, epochs: int | None) -> Path:
        """A trial's run folder: `<sweep dir>/<number>`; a shorter rung's run `<number>-e<epochs>`."""
        return self.sweep_dir / (str(number) if epochs is None or epochs == self.rungs[-1] else f"{number}-e{epochs}")

    def _job_overrides(self, study: optuna.Study, space: SearchSpace, trial: optuna.trial.Trial, epochs: int | None = None) -> list[str]:
        """One job's overrides: drawn and fixed values (drawn once: a promoted trial gets its
        own again), its folder, its schedule's length in schedule halving."""
        from resnet_lab.sweep.search_space import suggest

        drawn = {name: suggest(trial, name, distribution) for name, distribution in space.distributions.items()}
        for name, value in space.fixed.items():
            trial.set_user_attr(name, value)
        if self.custom_search_space:
            instantiate({"_target_": self.custom_search_space, "_partial_": True})(self.task_config, trial)
        overlap = set(trial.params) & set(space.fixed)
        if overlap:
            raise ConfigError(f"{', '.join(sorted(overlap))} is both fixed and searched; drop one of the two")
        folder = self._folder(trial.number, epochs)
        liveness.claim(trial)
        if finished_outputs(folder):
            raise ConfigError(
                f"trial {trial.number}'s folder {folder} holds another run (a study of the same name started again?); "
                "choose another hydra.sweep.dir for this study"
            )
        trial.set_user_attr("run_dir", str(folder.absolute()))
        # The job finds its study through <sweep dir>/study.json (resnet_lab/job.py), whatever process it runs in.
        length = [] if epochs is None else [f"trainer.epochs={epochs}"]
        return [*space.overrides({**dict(trial.params), **drawn}), *length, f"hydra.sweep.subdir={folder.name}"]

    def _tell(self, study: optuna.Study, trial: optuna.trial.Trial, result: JobReturn, rung: int | None = None) -> str | None:
        """Tell the trial's outcome (at a rung below the last: go on, or PRUNED); returns the
        failure's one line, or None."""
        import optuna

        if result.status is JobStatus.COMPLETED and isinstance(result.return_value, Pruned):
            pruned = result.return_value
            trial.set_user_attr("pruned_at_epoch", pruned.epoch)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            log.info("trial %d pruned after epoch %d", trial.number, pruned.epoch)
            return None
        reason = None
        if result.status is JobStatus.COMPLETED:
            values, reason = _values(result.return_value, len(self.directions))
        else:
            try:
                result.return_value  # noqa: B018  (the property re-raises the job's exception)
            except Exception as error:  # noqa: BLE001 - any failure of a job is recorded on its trial
                reason = one_line(error)
        if reason is None and rung is not None:
            self._climb(study, trial, values[0], rung)
            return None
        if reason is None:
            try:
                study.tell(trial, values=values)
            except RuntimeError as error:
                # GridSampler calls Study.stop() after the grid's last point, which only optimize()
                # may do; Optuna has stored the trial (it does so in a `finally`), so the sweep goes on.
                if "Study.stop" not in str(error):
                    raise
            return None
        trial.set_user_attr(liveness.FAIL_REASON, reason)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, reason)
        return reason

    def _climb(self, study: optuna.Study, trial: optuna.trial.Trial, value: float, rung: int) -> None:
        """A complete run at `rung` scored `value`: recorded at step = its epochs; the last rung
        completes the trial, a promoted one queues its next rung, any other is PRUNED here."""
        import optuna

        epochs = self.rungs[rung]
        trial.report(value, epochs)
        if rung == len(self.rungs) - 1:
            study.tell(trial, value)
            return
        others = [t.intermediate_values[epochs] for t in study.get_trials(deepcopy=False) if t.number != trial.number and epochs in t.intermediate_values]
        if promoted(value, others, self.search.pruner.reduction_factor if self.search else 3, self.directions[0] == "MAXIMIZE"):
            log.info("trial %d: %.4f after a complete %d-epoch run, among the best: it goes on to %d epochs", trial.number, value, epochs, self.rungs[rung + 1])
            self.promoted.append((trial, rung + 1))
            return
        trial.set_user_attr("pruned_at_epoch", epochs)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.info("trial %d pruned: %.4f after a complete %d-epoch run", trial.number, value, epochs)

    def _discard_unstarted(self) -> None:
        """A sweep refused before its first trial leaves nothing: the storage file it created and
        its sweep folder (with parents left empty, up to the working directory) go again."""
        if self.created_file is not None:
            for suffix in ("", "-wal", "-shm"):  # SQLite's write-ahead log and its index beside the file
                self.created_file.with_name(self.created_file.name + suffix).unlink(missing_ok=True)
            remove_empty_folders(self.created_file.parent, Path.cwd())
        remove_empty_folders(self.sweep_dir.absolute(), Path.cwd())

    def _lr_window(self, search: HParamsSearchConfig, study: optuna.Study, sweep_dir: Path) -> tuple[dict[str, str], list[float], float | None]:
        """(search space of max_lr and weight_decay, max_lr bounds, LR-finder suggestion or None
        when the bounds were given), kept in the study so a continued sweep searches the same."""
        if search.max_lr_bounds:
            low, high = search.max_lr_bounds
            suggestion = None
        else:
            suggestion = self._suggestion(search, study, sweep_dir)
            factors = search.lr_window or self.task_config.optimizer.lr_window  # null: the optimizer's, whose best peaks lie at its own multiples
            low, high = suggestion * factors[0], suggestion * factors[1]
            log.info("LR-finder suggestion %.4g -> max_lr in [%.4g, %.4g]", suggestion, low, high)
        grid = search.grid_points if self.is_grid() else None
        decay_low, decay_high = self.task_config.optimizer.weight_decay_window  # the optimizer's: decay's scale is its own
        space = {
            LR_KEY: _log_space(low, high, grid),
            "optimizer.weight_decay": _log_space(decay_low, decay_high, grid),
        }
        _keep_one_search_space(study, space)
        if suggestion is not None and SUGGESTION_ATTR not in study.user_attrs:
            study.set_user_attr(SUGGESTION_ATTR, suggestion)
        return space, [low, high], suggestion

    def _suggestion(self, search: HParamsSearchConfig, study: optuna.Study, sweep_dir: Path) -> float:
        """The centre of the max_lr window: a named lr_finder.json, else the suggestion the study
        stored when it started, else a range test run now into the sweep directory."""
        from resnet_lab.optim.lr_range import read_suggestion

        if search.lr_finder_json:
            return read_suggestion(search.lr_finder_json)
        if SUGGESTION_ATTR in study.user_attrs:
            value = float(study.user_attrs[SUGGESTION_ATTR])
            log.info("reusing the study's LR-finder suggestion %.4g", value)
            return value
        from resnet_lab.config import validate
        from resnet_lab.train.lr_auto import run_range_test

        task_config = OmegaConf.masked_copy(self.task_config, [str(k) for k in self.task_config if k != "hydra"])
        return run_range_test(validate(task_config), sweep_dir / "lr_finder").suggestion

    def _share_storage(self, sweep_dir: Path) -> None:
        """Workers in other processes need a study they can all open: an in-memory one becomes a
        journal file in the sweep folder (the command that continues it names that file)."""
        from resnet_lab.study_storage import open_storage

        if self.storage_url is not None:
            return
        self.storage_url = f"journal:///{(sweep_dir / 'study.log').resolve()}"
        self.created_file = _new_storage_file(self.storage_url)
        self.opened = open_storage(self.storage_url)
        log.info("workers share the study through %s; continue it with hydra.sweeper.storage=%s", self.storage_url, self.storage_url)

    def _run_workers(self, count: int, sweep_dir: Path, study: optuna.Study) -> None:
        """`count` sweep processes on this study (resnet_lab.sweep.workers), started with the
        command line that started this one."""
        from resnet_lab.sweep.workers import SweepWorkerFailed, plan_workers, run_workers

        seed = self.sampler_config.get("seed")
        # A URL with a password stays as the user typed it on the command line the workers get.
        storage = None if MASK in str(self.storage_url) else self.storage_url
        try:
            run_workers(plan_workers(count, sys.argv[1:], sweep_dir.resolve(), study.study_name, storage, None if seed is None else int(seed)))
        except SweepWorkerFailed as failure:
            if not study_is_complete(study, self.n_trials):
                raise
            # The study is what the user asked for: it is complete, so the sweep succeeded.
            log.warning("%s; the study has all its %d trials all the same", one_line(failure), self.n_trials)

    def _save_config(self, sweep_dir: Path, space: dict[str, str], bounds: list[float] | None) -> None:
        """multirun.yaml as Hydra's basic sweeper writes it, showing the search space actually used."""
        saved = plain_dict(self.task_config, resolve=False)
        saved["hydra"]["sweeper"]["params"] = {**(saved["hydra"]["sweeper"].get("params") or {}), **space}
        saved["hydra"]["sweeper"]["storage"] = self.storage_url
        if bounds is not None:
            saved["hparams_search"]["max_lr_bounds"] = [float(f"{b:.6g}") for b in bounds]
        OmegaConf.save(OmegaConf.create(saved), sweep_dir / "multirun.yaml")


def _keep_password_out_of_saved_configs(config: DictConfig) -> None:
    """Every job's config, which Hydra saves in its .hydra/, starts from this sweep's: a password
    typed into the storage URL is masked there (and in the overrides Hydra records), once the
    storage has been opened with it. Jobs that open the study themselves connect through the
    driver's own sources (PGPASSWORD, ~/.pgpass)."""
    raw = plain_dict(config.hydra.sweeper, resolve=False).get("storage")
    if raw is None or not has_secret(str(raw)):
        return
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweeper.storage = mask_secrets(str(raw))
        config.hydra.overrides.hydra = [mask_secrets(str(o)) for o in config.hydra.overrides.hydra]


def _parse(arguments: list[str]) -> SearchSpace:
    from resnet_lab.sweep.search_space import parse

    try:
        return parse(arguments)
    except ResnetLabError:
        raise
    except Exception as error:
        raise ConfigError(f"hydra.sweeper.params: {one_line(error)}") from error


def _values(returned: Any, objectives: int) -> tuple[list[float], str | None]:
    """A job's return as the study's values, or why it cannot be one (then the trial fails)."""
    try:
        values = [float(returned)] if objectives == 1 else [float(v) for v in returned]
    except (TypeError, ValueError):
        return [], f"returned {returned!r}, not {'a number' if objectives == 1 else f'{objectives} numbers'}"
    if len(values) != objectives:
        return [], f"returned {len(values)} values for {objectives} objectives"
    if any(math.isnan(v) for v in values):
        return [], f"returned {returned!r}"
    return values, None


def _within_total(
    study: optuna.Study, trials: list[optuna.trial.Trial], total: int, read: list[optuna.trial.FrozenTrial], taken: set[int]
) -> list[optuna.trial.Trial]:
    """Workers that recount the study at the same instant may each ask for its last trial. Trial
    numbers are handed out in order, so a trial runs only if fewer than `total` counted trials
    have a lower number; the others are told FAIL with no reason (never counted, never run).
    `read` is the study as read before asking (less `taken`): when the new trials follow it
    directly, no other process asked in between and it is still the count (a trial read as
    running may have ended since, which never adds to it); otherwise the study is read again."""
    import optuna

    follows = sorted(t.number for t in trials) == list(range(len(read), len(read) + len(trials)))
    current = [t for t in read if t.number not in taken] if follows else study.get_trials(deepcopy=False)
    numbers = [t.number for t in current if liveness.counts(t)]
    kept = [trial for trial in trials if sum(n < trial.number for n in numbers) < total]
    for trial in trials:
        if trial not in kept:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    if len(kept) < len(trials):
        log.info("trial(s) %s not started: the study already has its hydra.sweeper.n_trials", ", ".join(str(t.number) for t in trials if t not in kept))
    return kept


def _write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """optimization_results.yaml as hydra-optuna-sweeper writes it, once, at the end; a study
    without a complete trial is an error, as it is there."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        reasons = [str(t.user_attrs.get(liveness.FAIL_REASON)) for t in study.get_trials(deepcopy=False) if liveness.FAIL_REASON in t.user_attrs]
        raise ResnetLabError(f"no trial of study '{study.study_name}' completed{': ' + reasons[0] if reasons else ''}")
    if len(study.directions) == 1:
        best = study.best_trial
        results: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("best trial %d: %s -> %s", best.number, best.params, best.value)
    else:
        results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
        log.info("%d Pareto-optimal trial(s)", len(study.best_trials))
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _log_space(low: float, high: float, grid_points: int | None) -> str:
    """A log-uniform interval, or for the grid sampler `grid_points` log-spaced choices."""
    if grid_points is None:
        return f"tag(log, interval({low:.6g}, {high:.6g}))"
    ratio = (high / low) ** (1 / (grid_points - 1))
    return "choice(" + ", ".join(f"{low * ratio**i:.4g}" for i in range(grid_points)) + ")"


def selection(val_fraction: float, split_seed: int) -> str:
    """The split a study's values are measured on, as the study records it."""
    return f"val (data.val_fraction={val_fraction:g}, data.split_seed={split_seed})" if val_fraction > 0 else "test"


def _keep_one_selection(study: optuna.Study, split: str) -> None:
    """A study's values are all measured on one split: test accuracies and validation accuracies
    (or two validation splits) would mislead its sampler, pruner and report. A study that holds
    trials with values from before the split was recorded selected on test, the default then
    (trials only enqueued have no values yet)."""
    import optuna

    valued = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    stored = study.user_attrs.get(SELECTION_ATTR) or ("test" if valued else None)
    if stored is None:
        study.set_user_attr(SELECTION_ATTR, split)
        return
    if stored != split:
        raise ConfigError(
            f"study '{study.study_name}' selected its trials on {stored}; this sweep would measure them on {split}: continue it with "
            "its data settings, or start a separate study with hydra.sweeper.study_name=<new name>"
        )


def _keep_one_search_space(study: optuna.Study, space: dict[str, str]) -> None:
    """A study samples one search space: trials from two windows would mislead its sampler and
    its report, so a continued study that asks for another window is refused."""
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, space)
        return
    if stored != space:
        changed = "; ".join(f"{key}: stored {stored.get(key)}, asked {value}" for key, value in space.items() if stored.get(key) != value)
        raise ConfigError(
            f"study '{study.study_name}' was started with another search space ({changed}); continue it with the same "
            "hparams_search settings (drop lr_finder_json / max_lr_bounds to reuse its window), or start a separate "
            "study with hydra.sweeper.study_name=<new name>"
        )


def _checked_search(config: DictConfig, directions: list[str], storage: str | None) -> HParamsSearchConfig | None:
    """resnet_lab's own sweep settings, checked before the storage is opened or a folder made (any
    other Hydra app sweeps its params as given: None)."""
    if config.get("hparams_search") is None:
        return None
    search = cast(HParamsSearchConfig, OmegaConf.to_object(config.hparams_search))
    search.check("hparams_search")
    cast(OptimizerConfig, OmegaConf.to_object(config.optimizer)).check("optimizer")  # its weight_decay_window and lr_window are searched
    _check_objectives(search.objectives, directions)
    _check_pruning(search.pruner, config, directions, storage)
    if search.workers > 1:
        _check_workers(search.workers, config)
    return search


def _new_storage_file(url: str | None) -> Path | None:
    """The SQLite or journal file a URL names, when it does not exist yet (this sweep creates it)."""
    from resnet_lab.study_storage import storage_file

    path = storage_file(url)
    return path if path is not None and not path.exists() else None


def study_is_complete(study: optuna.Study, total: int) -> bool:
    """The study holds its `total` finished trials (what a sweep is for, however its workers fared)."""
    return liveness.counted(study, running=False) >= total


def _workers_to_start(wanted: int, remaining: int) -> int:
    """No more workers than trials left to run: the others would start only to stop."""
    if remaining < wanted:
        log.info("starting %d sweep worker(s) of hparams_search.workers=%d: the study has %d trial(s) left to run", max(remaining, 0), wanted, remaining)
    return max(min(wanted, remaining), 0)


def machine_slots() -> tuple[int, str]:
    """How many one-trial-at-a-time workers this machine runs side by side, and why."""
    from resnet_lab.sweep.workers import visible_gpus

    gpus = visible_gpus()
    if gpus:
        return len(gpus), f"{len(gpus)} visible GPU(s), one worker each"
    cores = os.cpu_count() or 1
    return cores, f"{cores} CPU core(s), one worker each"


def _check_objectives(objectives: list[Objective], directions: list[str]) -> None:
    """Each objective has one sensible direction; hydra.sweeper.direction must say the same."""
    expected = [Objective(o).direction for o in objectives]
    if expected != list(directions):
        names = [Objective(o).value for o in objectives]
        raise ConfigError(
            f"hydra.sweeper.direction={list(directions)} does not fit hparams_search.objectives={names}: "
            f"set hydra.sweeper.direction={expected} (accuracy is maximised, time and epochs minimised)"
        )


IN_PROCESS_LAUNCHER = "BasicLauncher"


def _launcher(config: DictConfig) -> str:
    """The name of the class that launches the sweep's jobs (Hydra's basic one runs them here)."""
    return str(config.hydra.launcher.get("_target_", IN_PROCESS_LAUNCHER)).rsplit(".", 1)[-1]


def _check_workers(count: int, config: DictConfig) -> None:
    """Each worker runs its trials one at a time in its own process: a launcher or batches of
    its own would stack a second kind of parallelism on top."""
    launcher = _launcher(config)
    if launcher != IN_PROCESS_LAUNCHER:
        raise ConfigError(
            f"hparams_search.workers={count} runs {count} sweep processes that each run one trial at a time; "
            f"{launcher} would run every trial again elsewhere: drop the hydra/launcher override "
            "(or keep the launcher with hparams_search.workers=1 and hydra.sweeper.n_jobs)"
        )
    slots, why = machine_slots()
    if count > slots:
        raise ConfigError(f"hparams_search.workers={count} is more than this machine runs at once: at most {slots} ({why})")
    if int(config.hydra.sweeper.n_jobs) != 1:
        raise ConfigError(
            f"hparams_search.workers={count} with hydra.sweeper.n_jobs={config.hydra.sweeper.n_jobs}: choose one, workers "
            "(always busy) or n_jobs (batches that wait for their slowest trial)"
        )


def _rungs(search: HParamsSearchConfig | None, config: DictConfig) -> list[int]:
    """The schedule lengths of schedule halving (empty: every trial trains the recipe once)."""
    if search is None or PrunerKind(search.pruner.kind) != PrunerKind.schedule_halving:
        return []
    return rungs(int(config.trainer.epochs), search.pruner.min_epochs, search.pruner.reduction_factor)


def _check_pruning(pruner: PrunerConfig, config: DictConfig, directions: list[str], storage_url: str | None) -> None:
    """A pruner judges trials by their evaluated epochs, Optuna prunes single-objective studies
    only, and jobs in other processes reach their trial only through a storage: what cannot work
    is refused in one line before any trial starts."""
    if PrunerKind(pruner.kind) == PrunerKind.none:
        return
    if PrunerKind(pruner.kind) == PrunerKind.schedule_halving:
        if len(directions) > 1:
            raise ConfigError(
                f"hparams_search.pruner.kind=schedule_halving is not allowed with {len(directions)} objectives (hydra.sweeper.direction): "
                "it ranks trials by one objective; use hparams_search.pruner.kind=none"
            )
        return  # judged by the sweeper on each complete run's final value: no evaluated epochs or reachable study needed
    launcher = _launcher(config)
    if launcher != IN_PROCESS_LAUNCHER and storage_url is None:
        raise ConfigError(
            f"hparams_search.pruner.kind={PrunerKind(pruner.kind).value} with {launcher}: its jobs run in other processes "
            "and cannot reach an in-memory study; set hydra.sweeper.storage=sqlite:///<file>.db, journal:///<file>.log or a PostgreSQL URL"
        )
    if len(directions) > 1:
        raise ConfigError(
            f"hparams_search.pruner.kind={PrunerKind(pruner.kind).value} is not allowed with {len(directions)} objectives "
            "(hydra.sweeper.direction): Optuna prunes single-objective studies only; use hparams_search.pruner.kind=none"
        )
    if int(config.trainer.eval_every) < 1:
        raise ConfigError(
            f"hparams_search.pruner.kind={PrunerKind(pruner.kind).value} needs evaluated epochs, but trainer.eval_every=0 evaluates "
            "only after the last one; set trainer.eval_every=1 (or every N epochs) or hparams_search.pruner.kind=none"
        )
