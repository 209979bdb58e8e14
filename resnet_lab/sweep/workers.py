"""Sweeps whose slots never wait: `hparams_search.workers=N` runs N sweep processes on one study.

Hydra's launchers run trials in batches of `n_jobs` that wait for the slowest, and stamp every
trial of a batch with the batch's start and end. Optuna's own way to distribute is several
processes on one storage, each asking for its next trial the moment the last one finished,
failed or was pruned; this module starts them from the one command the user typed. The process
that read the command sets up the study (storage, LR-finder window, search space), then starts the
workers with the same command line, each running one trial at a time in-process into the same
sweep folder, with its own sampler seed, its own GPU (round-robin over the visible ones) or an
equal share of the CPU threads, and its log in `<sweep dir>/workers/<i>.log`. The same command on
another machine, on the same PostgreSQL study, adds that machine's workers; the study's total
holds across all of them (see `sweep/liveness.py`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from resnet_lab.errors import ResnetLabError

log = logging.getLogger(__name__)

# Settings each worker gets from the sweep that starts it; the user's values for them are dropped.
WORKER_KEYS = ("hparams_search.workers", "hydra.sweep.dir", "hydra.sweeper.n_jobs", "hydra.sweeper.sampler.seed", "hydra.sweeper.study_name")
STOP_GRACE_S = 60.0  # an interrupted worker saves its trial's checkpoint before it exits


class SweepWorkerFailed(ResnetLabError):
    """A worker process of a sweep ended with an error; its log holds the story."""


@dataclass(frozen=True)
class Worker:
    index: int
    command: list[str]
    env: dict[str, str]
    log_file: Path


def plan_workers(count: int, argv: list[str], sweep_dir: Path, study_name: str, storage: str | None, seed: int | None) -> list[Worker]:
    """The worker processes for `python -m resnet_lab.train <argv>`: the user's command line with
    one trial at a time, the shared sweep folder and study (its name, which Optuna chose if the
    user did not; `storage`: the study's URL, or None to keep the user's own), and a sampler seed
    apart for each."""
    replaced = WORKER_KEYS if storage is None else (*WORKER_KEYS, "hydra.sweeper.storage")
    kept = [arg for arg in argv if arg not in ("-m", "--multirun") and _key(arg) not in replaced]
    devices = visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // count)
    workers = []
    for index in range(count):
        settings = ["hparams_search.workers=1", f"hydra.sweep.dir={sweep_dir}", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.study_name={study_name}"]
        if storage is not None:
            settings.append(f"hydra.sweeper.storage={storage}")
        if seed is not None:
            settings.append(f"hydra.sweeper.sampler.seed={seed + index}")
        # Without HYDRA_FULL_ERROR (set by this process's own entry point) a worker ends with the
        # one-line error the user would read, which is what its log's last line then reports.
        env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"} | {"OMP_NUM_THREADS": str(threads)}
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
        command = [sys.executable, "-m", "resnet_lab.train", "-m", *kept, *settings]
        workers.append(Worker(index, command, env, sweep_dir / "workers" / f"{index}.log"))
    return workers


def run_workers(workers: list[Worker]) -> None:
    """Starts every worker, waits for all, and raises with the first failure's own last line. An
    interrupt (or any error here) stops the workers the way Ctrl-C stops one sweep."""
    running: list[tuple[Worker, subprocess.Popen]] = []
    try:
        for worker in workers:
            worker.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(worker.log_file, "w") as output:
                process = subprocess.Popen(
                    worker.command,
                    env=worker.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_dies_with(os.getpid()) if sys.platform == "linux" else None,
                )
            running.append((worker, process))
            where = f"GPU {worker.env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in worker.env else f"{worker.env['OMP_NUM_THREADS']} CPU thread(s)"
            log.info("sweep worker %d started (pid %d, %s); its log: %s", worker.index, process.pid, where, worker.log_file)
        for worker, process in running:
            code = process.wait()
            log.info("sweep worker %d ended with exit code %d", worker.index, code)
    finally:
        _stop(process for _, process in running)
    failed = [(worker, process.returncode) for worker, process in running if process.returncode != 0]
    if failed:
        worker, code = failed[0]
        error = SweepWorkerFailed(f"sweep worker {worker.index} exited with code {code}: {_last_line(worker.log_file)} (its log: {worker.log_file})")
        error.exit_code = code if code > 0 else 1
        raise error


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _dies_with(parent: int):
    """For the worker's child side of fork: the kernel sends it SIGTERM when the sweep process dies
    (even by kill -9), so no worker is left running on its own; SIGTERM lets it save its trial.
    SIGINT, with which the sweep stops its workers, is put back to its default: a sweep started
    where SIGINT is ignored (a background job of a script) would otherwise pass that on, and its
    workers would be killed after STOP_GRACE_S instead of saving their trials."""

    def arrange() -> None:
        import ctypes

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _stop(processes) -> None:
    """Workers still running when the sweep stops are interrupted, then killed if they hang."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGINT)
    for process in alive:
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries; none without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _last_line(log_file: Path) -> str:
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()] if log_file.is_file() else []
    return lines[-1].strip() if lines else "no output"
