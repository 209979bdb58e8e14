"""The failures a user reads as one line, by kind, each with the exit code the CLI ends with.

Every kind's message is the whole story (the key or path, the offending value, what is allowed
or what to do next), so the CLI prints it without a traceback. Kinds, not one catch-all class,
because callers act on them differently: a sweep records a training failure as a failed trial
and goes on, while a bad setting stops every trial alike.
"""

from __future__ import annotations

EXIT_USAGE = 2  # a command line or setting that cannot be used, as argparse and Hydra's users expect


class ResnetLabError(Exception):
    """A user-facing failure; `exit_code` is what the command-line entry points exit with, and a
    refusal (nothing was done) leaves no run folder behind."""

    exit_code = 1
    refusal = False


class ConfigError(ResnetLabError, ValueError):
    """A setting that is wrong: refused before any work, nothing written. Exit 2 (usage)."""

    exit_code = EXIT_USAGE
    refusal = True


class DataError(ResnetLabError, ValueError):
    """Input files that cannot be used as given: an unreadable image folder or dataset, a
    damaged or unsafe checkpoint, a folder that is not a run. Refused; exit 2 like a setting."""

    exit_code = 2
    refusal = True


class UnsafeCheckpointError(DataError):
    """The file holds objects whose loading could run code; it is never unpickled."""


class DiskFullError(ResnetLabError):
    """The disk filled up while a run wrote its outputs; the last complete checkpoint is intact
    and the message gives the command that resumes. Exit 2: the machine, not the run, must change."""

    exit_code = 2


class TrainingFailure(ResnetLabError):
    """The run started and could not go on with these settings. Exit 3; in a sweep the trial is
    marked failed with this message and the sweep continues."""

    exit_code = 3


class DivergedError(TrainingFailure):
    """The training loss became NaN or infinite: a setting (usually the LR) is too aggressive."""


class DeviceOutOfMemory(TrainingFailure):
    """The accelerator ran out of memory: the batch or the model is too large for it."""


class TrialPruned(ResnetLabError):
    """A sweep's pruner stopped this trial after an evaluated epoch: not a failure. Its outputs so
    far are kept and the sweep records the trial as PRUNED."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"pruned after epoch {epoch} (objective {value:.4f})")
        self.epoch, self.value = epoch, value


class Reported(BaseException):
    """Carries a user error past Hydra to the entry point, which prints it as the only line.
    Hydra reports a failed single run at length and turns a callback's Exception into a warning
    and carries on; a BaseException passes both (in a multirun, a job's error stays an Exception:
    the sweep goes on)."""

    def __init__(self, error: ResnetLabError) -> None:
        super().__init__(str(error))
        self.error = error
