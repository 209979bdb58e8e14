"""Several sweep workers sharing one Optuna study: a JournalStorage file and a real
PostgreSQL server on loopback; a killed worker's finished trials survive its restart."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from conftest import REPO, TINY, write_image_folder

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin:/usr/local/bin"}


def worker(cwd: Path, storage: str, name: str, seed: int, n_trials: int = 6, study: str = "shared") -> list[str]:
    return [
        sys.executable, "-m", "resnet_lab.train", "-m", "hparams_search=optuna", "data=image_folder", f"data.root={cwd / 'im'}", *TINY,
        "trainer.epochs=2", "hparams_search.max_lr_bounds=[0.01,0.1]", f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}", f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={name}",
    ]


def run_two_workers(cwd: Path, storage: str) -> None:
    write_image_folder(cwd / "im", train_per_class=24, test_per_class=8)
    workers = [subprocess.Popen(worker(cwd, storage, f"w{i}", seed=i), cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]


def check_shared_study(storage: str, study: str = "shared") -> list[optuna.trial.FrozenTrial]:
    from resnet_lab.sweep.optuna_sweeper import open_storage

    trials = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 and len(trials) == 6
    assert sorted(t.number for t in trials) == list(range(6))
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(dirs)) == 6 and all(Path(d, "summary.json").is_file() for d in dirs)
    assert {Path(d).parent.name for d in dirs} == {"w0", "w1"}, "both workers ran trials"
    return trials


def test_two_workers_on_one_machine_share_a_journal_file_study(tmp_path):
    """JournalStorage is what the README recommends for concurrent workers on one machine (two
    workers on one new SQLite file were seen to mix up a trial's parameters)."""
    storage = f"journal:///{tmp_path / 'study.log'}"
    run_two_workers(tmp_path, storage)
    check_shared_study(storage)


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 in a temporary data directory."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs Debian's postgresql)")
    home = Path(tempfile.mkdtemp(prefix="resnet_lab_pg_"))  # outside pytest's root-only tmp tree
    data, sockets = home / "data", home / "sockets"
    sockets.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_owner = ["runuser", "-u", "postgres", "--"]
        for path in (home, sockets):
            shutil.chown(path, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"], check=True, capture_output=True)
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(home / "pg.log"), "start"], check=True, capture_output=True)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_share_a_postgresql_study_and_a_killed_worker_loses_nothing(tmp_path, postgres):
    run_two_workers(tmp_path, postgres)
    check_shared_study(postgres)

    command = worker(tmp_path, postgres, "solo", seed=5, n_trials=5, study="solo")
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "solo" / "2" / "checkpoints" / "last.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.kill()
    process.wait()
    restarted = subprocess.run([*command[:-1], "hydra.sweep.dir=solo-again"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    trials = optuna.load_study(study_name="solo", storage=postgres).trials
    kept = [t for t in trials if t.state.name == "COMPLETE"]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert len(kept) == 5 and len(interrupted) == 1 and interrupted[0].number == 2
    assert [Path(t.user_attrs["run_dir"]).parent.name for t in kept[:2]] == ["solo", "solo"]
