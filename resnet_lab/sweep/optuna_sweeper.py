"""hydra-optuna-sweeper, extended in thin ways; it sweeps any Hydra app, and on resnet_lab's
(whose config has `hparams_search`) it adds the LR-finder window and pruning settings:

* the max_lr window is centred on an LR range test (a named lr_finder.json, the suggestion the
  study stored on its first invocation, or a test run now into the sweep directory);
* `n_trials` is the study's total: an invocation launches only what is missing, so the same
  command run again continues the study instead of adding n_trials more;
* each trial runs in `<sweep dir>/<trial number>` and records that run directory (and, when it
  fails, the one-line reason), so workers sharing a study and a folder never share a trial folder;
* `hparams_search.workers=N` starts N sweep processes on the study that never wait for a batch
  (resnet_lab.sweep.workers), and the study ends with exactly n_trials however many share it;
* a job run in this process reports its evaluated epochs to its live trial (resnet_lab.trial);
* a study keeps the search space it was started with: a continued sweep that asks for another
  window is refused instead of mixing two windows in one study;
* a password in the storage URL is opened once and masked everywhere it would be saved.

Selected by `hydra.sweeper._target_` in conf/hparams_search/optuna.yaml; resnet_lab.cli registers
it with Hydra's plugin registry before every app starts, so this module imports Optuna only once a
sweep runs (a config error must not wait for it).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, cast

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from resnet_lab.config.plain import plain_dict
from resnet_lab.config.schema import HParamsSearchConfig, Objective, PrunerConfig, PrunerKind
from resnet_lab.errors import ConfigError, ResnetLabError, TrialPruned
from resnet_lab.files import write_json
from resnet_lab.messages import one_line
from resnet_lab.run_folder import finished_outputs
from resnet_lab.secrets import MASK, has_secret, mask_secrets
from resnet_lab.sweep.report import from_study, write_report
from resnet_lab.trial import live_trials

if TYPE_CHECKING:
    import optuna


log = logging.getLogger(__name__)

SUGGESTION_ATTR = "lr_finder_suggestion"
SPACE_ATTR = "search_space"
WORKER_ATTR = "worker"
WORKER = f"{socket.gethostname()}:{os.getpid()}"
STUDY_FILE = "study.json"
SAMPLER_WHITELIST = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


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
    """Wraps the real launcher: each job runs in `<sweep dir>/<trial number>` (unique in the
    study, whichever worker runs it), and its trial records worker, run directory and failure.

    The sweeper hands over the trials it just asked for (`pending`) rather than the launcher
    finding them in the study: with several workers on one study, another worker's freshly
    asked trial has no parameters yet and would match any job."""

    def __init__(self, inner: Launcher, sweep_dir: Path) -> None:
        self.inner = inner
        self.sweep_dir = sweep_dir.resolve()
        self.pending: list[optuna.trial.Trial] = []
        self.pruned: set[int] = set()  # trial numbers whose job the pruner stopped

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.inner.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def hold(self, trials: list[optuna.trial.Trial]) -> None:
        """The trials just asked for the next batch, claimed for this process at once: a trial
        left RUNNING by a process that died is recognised by this tag and replaced."""
        self.pending = list(trials)
        for handle in trials:
            _tag(handle, WORKER_ATTR, WORKER)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import optuna

        handles: list[optuna.trial.Trial | None] = list(self.pending)
        handles += [None] * (len(job_overrides) - len(handles))
        self.pending = []
        placed = []
        taken = [h for h in handles if h is not None and finished_outputs(self.sweep_dir / str(h.number))]
        if taken:
            for handle in handles:
                if handle is not None:
                    _tag(handle, "fail_reason", "not started: its trial folder holds another run")
                    handle.study.tell(handle, state=optuna.trial.TrialState.FAIL)
            folder = self.sweep_dir / str(taken[0].number)
            raise ConfigError(
                f"trial {taken[0].number}'s folder {folder} holds another run (a study of the same name in another storage?); "
                "choose another hydra.sweep.dir for this study"
            )
        for handle, overrides in zip(handles, job_overrides):
            if handle is not None:
                _tag(handle, "run_dir", str(self.sweep_dir / str(handle.number)))
                overrides = [*overrides, f"hydra.sweep.subdir={handle.number}"]
            placed.append(list(overrides))
        with live_trials({self.sweep_dir / str(h.number): h for h in handles if h is not None}):
            returns = self.inner.launch(placed, initial_job_idx)
        for handle, result in zip(handles, returns):
            if result.status is JobStatus.FAILED:
                try:
                    result.return_value  # noqa: B018  (the property re-raises the job's exception)
                except TrialPruned as pruned:
                    if handle is not None:
                        self.pruned.add(handle.number)
                        _tag(handle, "pruned_at_epoch", pruned.epoch)
                        log.info("trial %d pruned after epoch %d", handle.number, pruned.epoch)
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
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from resnet_lab.sweep.recording_impl import TrialRecordingImpl

        self.impl = TrialRecordingImpl.from_plugin(self.sweeper)
        self.sweeper = self.impl

    def _config(self) -> DictConfig:
        """The sweep's composed config, which the plugin keeps from setup() on."""
        if self.impl.config is None:
            raise RuntimeError("the sweeper was not set up")
        return self.impl.config

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from resnet_lab.study_storage import absolute_storage, open_storage

        impl = self.impl
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.created_file: Path | None = None
        try:
            self.search = _checked_search(config, impl.directions(), impl.storage)
            self.storage_url = absolute_storage(impl.storage)
            self.created_file = _new_storage_file(self.storage_url)
            impl.storage = open_storage(self.storage_url)
        except ResnetLabError:
            self._discard_unstarted()
            raise
        if self.storage_url is not None:
            self.storage_url = mask_secrets(self.storage_url)
        _give_jobs_storage(config, self.storage_url)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        assert impl.launcher is not None  # the plugin's setup made it
        impl.launcher = impl.recorder = TrialRecordingLauncher(impl.launcher, Path(str(config.hydra.sweep.dir)))

    def _discard_unstarted(self) -> None:
        """A sweep refused before its first trial leaves nothing: the storage file it created and
        its sweep folder (with parents left empty, up to the working directory) go again."""
        if self.created_file is not None:
            self.created_file.unlink(missing_ok=True)
        stop = Path.cwd()
        for folder in (self.sweep_dir.absolute(), *self.sweep_dir.absolute().parents):
            if folder == stop or not folder.is_relative_to(stop) or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        if self.created_file is not None and self.created_file.parent.is_dir() and not any(self.created_file.parent.iterdir()):
            self.created_file.parent.rmdir()

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        impl, config, search = self.impl, self._config(), self.search
        sweep_dir = self.sweep_dir
        workers = search.workers if search is not None else 1
        study = None
        try:
            if workers > 1:
                sweep_dir.mkdir(parents=True, exist_ok=True)
                self._share_storage(sweep_dir)
            study = optuna.create_study(
                study_name=impl.study_name, storage=impl.storage, sampler=impl.sampler, directions=impl.directions(), load_if_exists=True
            )
            if workers > 1:
                workers = _workers_to_start(workers, impl.n_trials - _counted(study))
            space, bounds, suggestion = self._lr_window(search, study, sweep_dir) if search is not None else ({}, None, None)
        except ResnetLabError:
            if study is None or not study.get_trials(deepcopy=False):
                self._discard_unstarted()
            raise
        sweep_dir.mkdir(parents=True, exist_ok=True)
        impl.params = cast(DictConfig, OmegaConf.merge(impl.params or {}, space))
        self._save_config(config, sweep_dir, space, bounds)
        write_json(
            sweep_dir / STUDY_FILE,
            {"study_name": impl.study_name, "storage": self.storage_url, "lr_finder_suggestion": suggestion, "params": space},
        )
        try:
            if workers > 1:
                self._run_workers(workers, sweep_dir, study)
            else:
                self._run_to_total(study, arguments)
        except KeyboardInterrupt:
            log.warning("sweep interrupted: its finished trials are kept in the study; run the same command again to continue it")
            raise
        finally:
            if workers > 1:
                self._save_config(config, sweep_dir, space, bounds)  # the workers saved their own settings there
            try:
                write_report(from_study(study, sweep_dir, suggestion), study)
            except Exception as error:
                log.warning("could not write the sweep report for %s: %s", sweep_dir, one_line(error))

    def _lr_window(self, search: HParamsSearchConfig, study: optuna.Study, sweep_dir: Path) -> tuple[dict[str, str], list[float], float | None]:
        """(search space of max_lr and weight_decay, max_lr bounds, LR-finder suggestion or None
        when the bounds were given), kept in the study so a continued sweep searches the same."""
        if search.max_lr_bounds:
            low, high = search.max_lr_bounds
            suggestion = None
        else:
            suggestion = self._suggestion(search, study, sweep_dir)
            low, high = suggestion / search.lr_low_factor, suggestion * search.lr_high_factor
            log.info("LR-finder suggestion %.4g -> max_lr in [%.4g, %.4g]", suggestion, low, high)
        grid = search.grid_points if self._is_grid() else None
        space = {
            "scheduler.max_lr": _log_space(low, high, grid),
            "optimizer.weight_decay": _log_space(search.weight_decay_low, search.weight_decay_high, grid),
        }
        _keep_one_search_space(study, space)
        if suggestion is not None and SUGGESTION_ATTR not in study.user_attrs:
            study.set_user_attr(SUGGESTION_ATTR, suggestion)
        return space, [low, high], suggestion

    def _share_storage(self, sweep_dir: Path) -> None:
        """Workers in other processes need a study they can all open: an in-memory one becomes a
        journal file in the sweep folder (the command that continues it names that file)."""
        from resnet_lab.study_storage import open_storage

        if self.storage_url is not None:
            return
        self.storage_url = f"journal:///{(sweep_dir / 'study.log').resolve()}"
        self.created_file = _new_storage_file(self.storage_url)
        self.impl.storage = open_storage(self.storage_url)
        log.info("workers share the study through %s; continue it with hydra.sweeper.storage=%s", self.storage_url, self.storage_url)

    def _run_workers(self, count: int, sweep_dir: Path, study: optuna.Study) -> None:
        """`count` sweep processes on this study (resnet_lab.sweep.workers), started with the
        command line that started this one."""
        from resnet_lab.sweep.workers import SweepWorkerFailed, plan_workers, run_workers

        config = self._config()
        seed = config.hydra.sweeper.sampler.get("seed")
        # A URL with a password stays as the user typed it on the command line the workers get.
        storage = None if MASK in str(self.storage_url) else self.storage_url
        try:
            run_workers(plan_workers(count, sys.argv[1:], sweep_dir.resolve(), storage, None if seed is None else int(seed)))
        except SweepWorkerFailed as failure:
            if not study_is_complete(study, self.impl.n_trials):
                raise
            # The study is what the user asked for: it is complete, so the sweep succeeded.
            log.warning("%s; the study has all its %d trials all the same", one_line(failure), self.impl.n_trials)

    def _run_to_total(self, study: optuna.Study, arguments: list[str]) -> None:
        """One batch at a time, recounting the shared study before each: finished trials (all
        invocations) plus trials other live workers are running. Workers that share a study
        therefore stop together at n_trials; two that count at the same instant and each ask for
        the last trial run it once (the later-numbered goes back to WAITING)."""
        import optuna

        from resnet_lab.sweep.recording_impl import SurplusTrials

        impl = self.impl
        total, launched = impl.n_trials, 0
        impl.study_total = total
        while True:
            self._fail_orphaned_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state.is_finished() and not t.user_attrs.get("interrupted") for t in trials)
            in_flight = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
            remaining = total - finished - in_flight
            if launched == 0 or remaining <= 0:
                log.info(
                    "study %s: %d finished, %d running elsewhere, of %d; launching %d more", impl.study_name, finished, in_flight, total, max(0, remaining)
                )
            if remaining <= 0 and launched == 0:
                log.warning(
                    "nothing to run: study '%s' already has %d of hydra.sweeper.n_trials=%d trials. To continue it, raise "
                    "hydra.sweeper.n_trials; to start a new study, set hydra.sweeper.study_name to a new name",
                    impl.study_name,
                    finished + in_flight,
                    total,
                )
            if remaining <= 0:
                break
            self._reseed(self._config(), offset=len(trials))
            impl.n_trials = min(remaining, impl.n_jobs)
            try:
                impl.sweep(arguments)
            except SurplusTrials as surplus:
                _wait_again(surplus.trials)
                continue
            except ValueError as error:
                # The plugin ends each call by reporting the study's best trial, which fails
                # while every finished trial has failed; the batch itself was run and recorded.
                if isinstance(error, ResnetLabError) or any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                    raise
            launched += impl.n_trials
        impl.n_trials = total

    @staticmethod
    def _fail_orphaned_trials(study: optuna.Study) -> None:
        """A RUNNING trial whose worker process on this host is gone was interrupted (killed
        sweep): mark it FAIL with the reason and do not count it, so another trial replaces it.
        Trials of live workers, or of other hosts, are left alone."""
        import optuna

        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
            worker_host, _, pid = worker.rpartition(":")
            if worker_host != host or not pid.isdigit() or _alive(int(pid)):
                continue
            handle = optuna.trial.Trial(study, trial._trial_id)
            try:
                handle.set_user_attr("interrupted", True)
                handle.set_user_attr("fail_reason", f"interrupted: its sweep process {pid} ended before the trial finished")
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker restarting at the same moment marked it first
            log.warning("trial %d was interrupted (process %s is gone): marked FAIL; a new trial replaces it", trial.number, pid)

    def _is_grid(self) -> bool:
        import optuna

        sampler = self.impl.sampler
        return isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler

    def _save_config(self, config: DictConfig, sweep_dir: Path, space: dict[str, str], bounds: list[float] | None) -> None:
        """multirun.yaml as Hydra's basic sweeper writes it, showing the search space actually
        used; the live config stays as composed, since Hydra checks each job's hydra.sweeper
        against it."""
        saved = plain_dict(config, resolve=False)
        saved["hydra"]["sweeper"]["params"] = {**(saved["hydra"]["sweeper"].get("params") or {}), **space}
        saved["hydra"]["sweeper"]["storage"] = self.storage_url
        if bounds is not None:
            saved["hparams_search"]["max_lr_bounds"] = [float(f"{b:.6g}") for b in bounds]
        OmegaConf.save(OmegaConf.create(saved), sweep_dir / "multirun.yaml")

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

        config = self._config()
        task_config = OmegaConf.masked_copy(config, [str(k) for k in config if k != "hydra"])
        return run_range_test(validate(task_config), sweep_dir / "lr_finder").suggestion

    def _reseed(self, config: DictConfig, offset: int) -> None:
        """A continued study must not replay the first invocation's random draws."""
        sampler_cfg = config.hydra.sweeper.sampler
        if offset == 0 or sampler_cfg.get("_partial_") or sampler_cfg.get("seed") is None:
            return
        options = plain_dict(sampler_cfg)
        # Spaced out so that workers started with neighbouring seeds never share a draw.
        options["seed"] = int(options["seed"]) + 10007 * offset
        self.impl.sampler = instantiate(options, _execution_whitelist_=SAMPLER_WHITELIST)


def _wait_again(trials: list[optuna.trial.Trial]) -> None:
    """Trials asked beyond the study's total go back to WAITING with no parameters drawn: no
    worker runs them now, and a continued study (a larger n_trials) runs them first."""
    import optuna

    for trial in trials:
        trial.storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.WAITING)
    log.info("trial(s) %s not started: the study already has its hydra.sweeper.n_trials", ", ".join(str(t.number) for t in trials))


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


def _counted(study: optuna.Study, running: bool = True) -> int:
    """Trials that count towards the study's total: finished (an interrupted one does not), and
    with `running` those other processes run now."""
    import optuna

    return sum(
        (t.state.is_finished() and not t.user_attrs.get("interrupted")) or (running and t.state == optuna.trial.TrialState.RUNNING)
        for t in study.get_trials(deepcopy=False)
    )


def study_is_complete(study: optuna.Study, total: int) -> bool:
    """The study holds its `total` finished trials (what a sweep is for, however its workers fared)."""
    return _counted(study, running=False) >= total


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


IN_PROCESS_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def _launcher(config: DictConfig) -> str:
    """The class that launches the sweep's jobs (Hydra's basic one runs them in this process)."""
    return str(config.hydra.launcher.get("_target_", IN_PROCESS_LAUNCHER))


def _check_workers(count: int, config: DictConfig) -> None:
    """Each worker runs its trials one at a time in its own process: a launcher or batches of
    its own would stack a second kind of parallelism on top."""
    launcher = _launcher(config)
    if launcher != IN_PROCESS_LAUNCHER:
        raise ConfigError(
            f"hparams_search.workers={count} runs {count} sweep processes that each run one trial at a time; "
            f"{launcher.rsplit('.', 1)[-1]} would run every trial again elsewhere: drop the hydra/launcher override "
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


def _check_pruning(pruner: PrunerConfig, config: DictConfig, directions: list[str], storage_url: str | None) -> None:
    """A pruner judges trials by their evaluated epochs, Optuna prunes single-objective studies
    only, and jobs in other processes reach their trial only through a storage: what cannot work
    is refused in one line before any trial starts."""
    if PrunerKind(pruner.kind) == PrunerKind.none:
        return
    launcher = _launcher(config)
    if launcher != IN_PROCESS_LAUNCHER and storage_url is None:
        raise ConfigError(
            f"hparams_search.pruner.kind={PrunerKind(pruner.kind).value} with {launcher.rsplit('.', 1)[-1]}: its jobs run in other processes "
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


def _give_jobs_storage(config: DictConfig, url: str | None) -> None:
    """Every job recomposes its config from the overrides and opens the study its config names:
    it gets the URL this sweep opened, made absolute (a relative SQLite or journal file, the
    default sqlite:///multirun/optuna.db included, is another file in a Ray task's working
    directory) and with a typed password replaced by *** (so Hydra's saved .hydra/hydra.yaml,
    multirun.yaml and W&B never see it; the storage itself was opened with the real URL before
    this). A URL kept as an interpolation (${oc.env:...}) that holds a password stays as written."""
    raw = plain_dict(config.hydra.sweeper, resolve=False).get("storage")
    resolved = plain_dict(config.hydra.sweeper).get("storage")
    if url is None or resolved == url or (raw != resolved and has_secret(str(resolved))):
        return
    overrides = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.sweeper.storage=")]
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweeper.storage = url
        config.hydra.overrides.hydra = [*overrides, f"hydra.sweeper.storage={url}"]
