"""The plugin's sweep loop, told which trials a batch holds before they launch.

Relies on hydra-optuna-sweeper 1.4.0rc3 (the version setup.cfg pins): `OptunaSweeperImpl.sweep`
asks `_configure_trials(trials, ...)` for one batch's overrides right before it hands them to the
launcher, tells each trial's result with `study.tell(trial=..., state=..., values=...)` on the
study those trials came from (`trial.study`), and `_get_directions()` turns the configured
direction(s) into Optuna's. A newer plugin
release must be checked against both before the pin moves (tests/test_sweep.py fails if trial
folders stop matching trial numbers). Imported only when a sweep runs: it imports Optuna.
"""

from __future__ import annotations

from typing import Any, Sequence

from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl


class SurplusTrials(Exception):
    """The study already had its total when these trials were asked: they must not run."""

    def __init__(self, trials: list) -> None:
        super().__init__(f"{len(trials)} trial(s) beyond the study's total")
        self.trials = trials


class TrialRecordingImpl(OptunaSweeperImpl):
    """OptunaSweeperImpl whose launcher learns the Optuna trials behind each batch of jobs."""

    recorder: Any = None  # the launcher wrapper that tags each trial with its run folder
    study_total: int | None = None  # trials the study ends with, over all workers and invocations

    @classmethod
    def from_plugin(cls, impl: OptunaSweeperImpl) -> "TrialRecordingImpl":
        """The same sweeper state (sampler, storage, params...) as the plugin built it."""
        recording = cls.__new__(cls)
        recording.__dict__.update(vars(impl))
        return recording

    def _configure_trials(self, trials: list, *args: Any, **kwargs: Any) -> Sequence[Sequence[str]]:
        if self.recorder is not None:
            self.recorder.hold(trials)
        if trials:
            self._refuse_surplus(trials)
            self._tell_pruned_trials_as_pruned(trials[0].study)
        return super()._configure_trials(trials, *args, **kwargs)

    def _refuse_surplus(self, trials: list) -> None:
        """Workers that recount the study at the same instant may each ask for its last trial.
        Trial numbers are handed out in order by the storage, so a trial runs only if fewer than
        the total trials that count (finished, or running) have a lower number; the others are
        raised back before any parameter is drawn, and the study ends with its total exactly."""
        import optuna

        if self.study_total is None:
            return
        counted = [
            t.number
            for t in trials[0].study.get_trials(deepcopy=False)
            if (t.state.is_finished() and not t.user_attrs.get("interrupted")) or t.state == optuna.trial.TrialState.RUNNING
        ]
        surplus = [trial for trial in trials if sum(n < trial.number for n in counted) >= self.study_total]
        if surplus:
            raise SurplusTrials(trials)

    def _tell_pruned_trials_as_pruned(self, study: Any) -> None:
        """The plugin's loop tells every job that raised as FAIL. A job stopped by its pruner
        raised too, so this study's `tell` turns FAIL into PRUNED for the trials the launcher saw
        pruned (Optuna then keeps the last reported epoch's value as the trial's)."""
        import optuna

        if getattr(study.tell, "tells_pruned", False):
            return
        plain_tell, recorder = study.tell, self.recorder

        def tell(trial: Any, values: Any = None, state: Any = None, skip_if_finished: bool = False) -> Any:
            number = trial if isinstance(trial, int) else trial.number
            if state == optuna.trial.TrialState.FAIL and recorder is not None and number in recorder.pruned:
                state = optuna.trial.TrialState.PRUNED
            return plain_tell(trial, values=values, state=state, skip_if_finished=skip_if_finished)

        tell.tells_pruned = True  # type: ignore[attr-defined]
        study.tell = tell

    def directions(self) -> list[str]:
        """hydra.sweeper.direction as Optuna's list of 'maximize'/'minimize'."""
        return self._get_directions()
