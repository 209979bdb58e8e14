"""The plugin's sweep loop, told which trials a batch holds before they launch.

Relies on hydra-optuna-sweeper 1.4.0rc3 (the version setup.cfg pins): `OptunaSweeperImpl.sweep`
asks `_configure_trials(trials, ...)` for one batch's overrides right before it hands them to the
launcher, and `_get_directions()` turns the configured direction(s) into Optuna's. A newer plugin
release must be checked against both before the pin moves (tests/test_sweep.py fails if trial
folders stop matching trial numbers). Imported only when a sweep runs: it imports Optuna.
"""

from __future__ import annotations

from typing import Any, Sequence

from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl


class TrialRecordingImpl(OptunaSweeperImpl):
    """OptunaSweeperImpl whose launcher learns the Optuna trials behind each batch of jobs."""

    recorder: Any = None  # the launcher wrapper that tags each trial with its run folder

    @classmethod
    def from_plugin(cls, impl: OptunaSweeperImpl) -> "TrialRecordingImpl":
        """The same sweeper state (sampler, storage, params...) as the plugin built it."""
        recording = cls.__new__(cls)
        recording.__dict__.update(vars(impl))
        return recording

    def _configure_trials(self, trials: list, *args: Any, **kwargs: Any) -> Sequence[Sequence[str]]:
        if self.recorder is not None:
            self.recorder.pending = list(trials)
        return super()._configure_trials(trials, *args, **kwargs)

    def directions(self) -> list[str]:
        """hydra.sweeper.direction as Optuna's list of 'maximize'/'minimize'."""
        return self._get_directions()
