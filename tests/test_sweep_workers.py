"""The parts of always-busy sweep workers that need no training: the exact total when workers
ask for the last trial at the same instant, on real Optuna studies, and the workers' commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from resnet_lab.study_storage import open_storage
from resnet_lab.sweep import liveness
from resnet_lab.sweep.optuna_sweeper import _within_total
from resnet_lab.sweep.workers import _dies_with, plan_workers


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_asking_for_the_last_trial_at_once_run_it_once(tmp_path, kind):
    """Three of four trials are done or running when two workers, having read the study at the
    same instant, each ask for one more: the lower-numbered one runs (its trial follows what it
    read), the other (whose trial does not) reads again, is told FAIL with nothing drawn and never
    counts, so the study ends with its total exactly; a continued study draws new trials."""
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 's.log'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for _ in range(2):
        done = study.ask()
        study.tell(done, done.suggest_float("x", 0, 1))
    study.ask()  # running in a third worker
    read = study.get_trials(deepcopy=False)
    first, second = study.ask(), study.ask()
    assert _within_total(study, [first], 4, read, set()) == [first]
    assert _within_total(study, [second], 4, read, set()) == []
    surplus = study.get_trials()[second.number]
    assert surplus.state.name == "FAIL" and surplus.params == {} and not liveness.counts(surplus)
    assert liveness.counted(study) == 4
    read = study.get_trials(deepcopy=False)
    assert _within_total(study, [again := study.ask()], 6, read, set()) == [again]


def test_a_trial_taken_over_from_a_dead_process_frees_its_place_in_the_total(tmp_path):
    study = optuna.create_study(study_name="freed", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    lost = study.ask()
    lost.set_user_attr(liveness.HEARTBEAT_ATTR, 0.0)
    read = study.get_trials()
    taken = set(liveness.take_over_dead_trials(study, read))
    assert taken == {lost.number}
    assert study.get_trials()[0].state.name == "FAIL" and liveness.counted(study) == 0
    assert dict(liveness.interrupted_reasons(study))[lost.number].startswith("interrupted: no heartbeat")
    fresh = study.ask()
    assert _within_total(study, [fresh], 1, read, taken) == [fresh], "the trial read as running was taken over: it no longer counts"


def test_each_worker_gets_the_command_line_with_its_seed_the_shared_folder_and_a_share_of_the_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    argv = ["-m", "hparams_search=optuna", "hparams_search.workers=4", "hydra.sweeper.n_jobs=1", "hydra.sweep.dir=x", "trainer.epochs=3"]
    workers = plan_workers(4, argv, Path("/sweeps/s"), "study", "sqlite:////studies/a.db", seed=10)
    assert [w.command[w.command.index("-m", 3) + 1 :] for w in workers][1] == [
        "hparams_search=optuna",
        "trainer.epochs=3",
        "hparams_search.workers=1",
        "hydra.sweep.dir=/sweeps/s",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.study_name=study",
        "hydra.sweeper.storage=sqlite:////studies/a.db",
        "hydra.sweeper.sampler.seed=11",
    ]
    assert {w.env["OMP_NUM_THREADS"] for w in workers} == {"2"} and [w.log_file.name for w in workers] == ["0.log", "1.log", "2.log", "3.log"]
    typed = plan_workers(2, ["hydra.sweeper.storage=postgresql://u:pw@h/db"], Path("/s"), "study", None, seed=None)[0].command
    assert "hydra.sweeper.storage=postgresql://u:pw@h/db" in typed and not any("seed=" in arg for arg in typed), "a typed URL with a password is kept as typed"


@pytest.mark.slow
def test_a_worker_can_be_stopped_with_sigint_even_when_its_sweep_ignores_sigint():
    """A sweep started as a script's background job ignores SIGINT, and children inherit that;
    the sweep stops its workers with SIGINT, so each worker starts with SIGINT at its default."""
    show = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        inherited = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True).stdout.strip()
        worker = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, check=True, preexec_fn=_dies_with(os.getpid())).stdout.strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert inherited == "False", "the case is exercised: a child of a process that ignores SIGINT ignores it too"
    assert worker == "True"


def test_a_sqlite_study_is_written_ahead_logged_and_another_reader_sees_each_commit(tmp_path):
    """Write-ahead logging spares every commit its fsync; what a commit wrote must still be
    there for a reader that opens the file on its own, as another worker does."""
    import sqlite3

    path = tmp_path / "s.db"
    study = optuna.create_study(study_name="wal", storage=open_storage(f"sqlite:///{path}"))
    trial = study.ask()
    trial.set_user_attr("run_dir", "somewhere")
    study.tell(trial, 0.5)
    reader = sqlite3.connect(path)
    try:
        assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert reader.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] == 1
    finally:
        reader.close()
    assert optuna.load_study(study_name="wal", storage=f"sqlite:///{path}").trials[0].user_attrs["run_dir"] == "somewhere"


def test_one_heartbeat_thread_stamps_the_trials_of_the_running_batch_only():
    study = optuna.create_study()
    first, second = study.ask(), study.ask()
    with liveness.Heartbeat(interval=0.01) as beat:
        with beat.running([first]):
            deadline = time.monotonic() + 30
            while liveness.HEARTBEAT_ATTR not in study.trials[first.number].user_attrs:
                assert time.monotonic() < deadline, "no heartbeat within 30 s"
                time.sleep(0.01)
        study.tell(first, 1.0)
        thread = beat.thread
    assert not thread.is_alive()
    assert liveness.HEARTBEAT_ATTR not in study.trials[second.number].user_attrs, "a trial outside the batch gets no beat"
