"""Sweeps (config group `hparams_search`): the resumable Optuna sweeper and sweep reports."""
