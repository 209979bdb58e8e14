"""The parts of always-busy sweep workers that need no training: the exact total when workers
ask for the last trial at the same instant, on real Optuna studies, and the workers' commands."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from resnet_lab.study_storage import open_storage
from resnet_lab.sweep.optuna_sweeper import _wait_again
from resnet_lab.sweep.recording_impl import SurplusTrials, TrialRecordingImpl
from resnet_lab.sweep.workers import plan_workers


def impl_with_total(total: int) -> TrialRecordingImpl:
    impl = TrialRecordingImpl.__new__(TrialRecordingImpl)
    impl.study_total = total
    return impl


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_asking_for_the_last_trial_at_once_run_it_once(tmp_path, kind):
    """Three of four trials are done or running when two workers each ask for one more: the
    lower-numbered one runs, the other goes back to WAITING with nothing drawn, and the next
    sweep that continues the study (a larger total) runs it first."""
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:///{tmp_path / 's.log'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for _ in range(2):
        done = study.ask()
        study.tell(done, done.suggest_float("x", 0, 1))
    study.ask()  # running in a third worker
    first, second = study.ask(), study.ask()
    impl = impl_with_total(4)
    impl._refuse_surplus([first])
    with pytest.raises(SurplusTrials) as refused:
        impl._refuse_surplus([second])
    _wait_again(refused.value.trials)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.number for t in waiting] == [second.number] and waiting[0].params == {}
    impl_with_total(6)._refuse_surplus([again := study.ask()])
    assert again.number == second.number, "a continued study runs the waiting trial before any new one"


def test_an_interrupted_trial_frees_its_place_in_the_total(tmp_path):
    study = optuna.create_study(study_name="freed", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    lost = study.ask()
    lost.set_user_attr("interrupted", True)
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    impl_with_total(1)._refuse_surplus([study.ask()])


def test_each_worker_gets_the_command_line_with_its_seed_the_shared_folder_and_a_share_of_the_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    argv = ["-m", "hparams_search=optuna", "hparams_search.workers=4", "hydra.sweeper.n_jobs=1", "hydra.sweep.dir=x", "trainer.epochs=3"]
    workers = plan_workers(4, argv, Path("/sweeps/s"), "sqlite:////studies/a.db", seed=10)
    assert [w.command[w.command.index("-m", 3) + 1 :] for w in workers][1] == [
        "hparams_search=optuna",
        "trainer.epochs=3",
        "hparams_search.workers=1",
        "hydra.sweep.dir=/sweeps/s",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.storage=sqlite:////studies/a.db",
        "hydra.sweeper.sampler.seed=11",
    ]
    assert {w.env["OMP_NUM_THREADS"] for w in workers} == {"2"} and [w.log_file.name for w in workers] == ["0.log", "1.log", "2.log", "3.log"]
    typed = plan_workers(2, ["hydra.sweeper.storage=postgresql://u:pw@h/db"], Path("/s"), None, seed=None)[0].command
    assert "hydra.sweeper.storage=postgresql://u:pw@h/db" in typed and not any("seed=" in arg for arg in typed), "a typed URL with a password is kept as typed"
