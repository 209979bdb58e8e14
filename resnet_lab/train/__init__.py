"""Training (config group `trainer`): the loop, its checkpoints and the run directory's files.

Nothing is imported here: `python -m resnet_lab.train` must answer --help and config errors
before torch loads (import the pieces from their modules, e.g. resnet_lab.train.run)."""
