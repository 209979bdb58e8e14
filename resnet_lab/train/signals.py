"""Signals during training: SIGINT and SIGTERM stop a run at a step boundary, where its state
can be saved and resumed, instead of killing it mid-step."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from resnet_lab.train.loop import Trainer

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """SIGINT/SIGTERM ask the trainer to stop after the step in flight (a second SIGINT stops
    at once). Only the main thread may install handlers; elsewhere signals keep their default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: object) -> None:
        if trainer.stop_signal and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = signum
        log.warning("signal %d: stopping after the current step, then saving the state", signum)

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
