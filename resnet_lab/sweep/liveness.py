"""Which trials of a study are alive, and which count towards its total.

Every sweep process keeps a heartbeat on the trials it runs: a trial attribute rewritten every
HEARTBEAT_S seconds by a thread, for any storage (SQLite, PostgreSQL, a journal file, memory). A
RUNNING trial whose heartbeat is older than GRACE_S belongs to a process that is gone, on whatever
machine or container it ran; on this machine, a trial whose process has ended is known dead at
once. Either way the trial is told FAIL, with the reason kept in the study's attributes, and does
not count: another trial takes its place, so the study still reaches its total. A trial with a
fresh heartbeat is never taken. Only Optuna's public API is used: trial attributes, `study.tell`
by trial number, study attributes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

HEARTBEAT_ATTR = "heartbeat_unix_s"
WORKER_ATTR = "worker"  # host:pid of the sweep process running the trial, stamped with its first heartbeat
FAIL_REASON = "fail_reason"  # a trial that ran and failed (counted, like the plugin's failed trials)
HEARTBEAT_S = 5.0
GRACE_S = 60.0


def interrupted_key(number: int) -> str:
    """The study attribute that says why trial `number` was taken over."""
    return f"trial_{number}_interrupted"


class Heartbeat:
    """While a sweep runs, the trials it is running carry a fresh heartbeat. One thread serves
    the whole sweep; each batch names its trials (`running`), so a batch starts no thread."""

    def __init__(self, interval: float = HEARTBEAT_S) -> None:
        self.interval = interval
        self.trials: list[optuna.trial.Trial] = []
        self.lock = threading.Lock()  # a beat never lands on a trial its batch has just told
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()

    @contextmanager
    def running(self, trials: list[optuna.trial.Trial]) -> Iterator[None]:
        with self.lock:
            self.trials = list(trials)
        try:
            yield
        finally:
            with self.lock:
                self.trials = []

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                self._stamp()

    def _stamp(self) -> None:
        now = time.time()
        for trial in self.trials:
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, now)
            except Exception as error:  # noqa: BLE001 - a missed beat is retried; it must not end a trial
                log.debug("heartbeat of trial %d not recorded: %s", trial.number, error)


def _process_gone(worker: str) -> bool:
    """The trial's sweep process ran on this machine and has ended."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def dead(trial: optuna.trial.FrozenTrial, now: float, grace: float = GRACE_S) -> str | None:
    """Why a RUNNING trial is dead (its process ended here, or its heartbeat stopped), or None."""
    worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
    if worker and _process_gone(worker):
        return f"interrupted: its sweep process {worker} ended before the trial finished"
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    started = trial.datetime_start.timestamp() if trial.datetime_start else now
    last = float(beat) if isinstance(beat, (int, float)) else started
    if now - last > grace:
        return f"interrupted: no heartbeat for {now - last:.0f} s (its sweep process is gone)"
    return None


def claim(trial: optuna.trial.Trial) -> None:
    """Mark a trial just asked as this process's (before it is launched). Its start time stands
    for a heartbeat until the first beat, HEARTBEAT_S later: one write per trial, not two."""
    trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")


def take_over_dead_trials(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], grace: float = GRACE_S) -> list[int]:
    """Tell FAIL every RUNNING trial of `trials` (the study as just read) whose process is gone;
    returns their numbers."""
    import optuna

    taken = []
    now = time.time()
    for trial in trials:
        if trial.state != optuna.trial.TrialState.RUNNING:
            continue
        reason = dead(trial, now, grace)
        if reason is None:
            continue
        try:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        except (RuntimeError, ValueError):
            continue  # another process finished or took it at the same moment
        study.set_user_attr(interrupted_key(trial.number), reason)
        log.warning("trial %d %s: marked FAIL; a new trial takes its place", trial.number, reason.removeprefix("interrupted: "))
        taken.append(trial.number)
    return taken


def counts(trial: optuna.trial.FrozenTrial, running: bool = True) -> bool:
    """Whether a trial counts towards the study's total: complete, pruned, failed in its job (it
    ran: the plugin counts it too), and with `running` those running now; not one taken over
    from a dead process, nor one asked beyond the total (neither carries a fail reason)."""
    import optuna

    state = trial.state
    if state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return True
    if state == optuna.trial.TrialState.FAIL:
        return FAIL_REASON in trial.user_attrs
    return running and state == optuna.trial.TrialState.RUNNING


def counted(study: optuna.Study, running: bool = True) -> int:
    return sum(counts(t, running) for t in study.get_trials(deepcopy=False))


def interrupted_reasons(study: Any) -> Iterator[tuple[int, str]]:
    """(trial number, reason) of every trial taken over from a dead process."""
    prefix, suffix = "trial_", "_interrupted"
    for key, value in study.user_attrs.items():
        if key.startswith(prefix) and key.endswith(suffix) and key[len(prefix) : -len(suffix)].isdigit():
            yield int(key[len(prefix) : -len(suffix)]), str(value)
