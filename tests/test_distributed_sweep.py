"""Several sweep workers sharing one Optuna study: docs/scaling.md's journal-file commands started
together, and a real PostgreSQL server on loopback reached with a password in its URL; every
trial's folder, overrides, summary and W&B run is checked against the study, and a killed
worker's finished trials survive its restart."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO, TINY, add_finished_trial, run_main, write_image_folder
from resnet_lab.study_storage import open_storage
from resnet_lab.sweep.liveness import interrupted_reasons
from resnet_lab.sweep.workers import STOP_GRACE_S
from resnet_lab.track.offline_run import read_offline_run

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/local/bin", "WANDB_MODE": "offline"}
SMALL = [*TINY, "trainer.epochs=2", "hparams_search.max_lr_bounds=[0.01,0.1]"]
TRACKED = [*(o for o in SMALL if not o.startswith("logger=")), "logger=wandb"]


def worker(cwd: Path, storage: str, name: str, seed: int, n_trials: int = 6, study: str = "shared", tracked: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "resnet_lab.train",
        "-m",
        "hparams_search=optuna",
        "data=image_folder",
        f"data.root={cwd / 'im'}",
        *(TRACKED if tracked else SMALL),
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={study}",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweep.dir={name}",
    ]


def run_together(commands: list[list[str] | str], cwd: Path) -> None:
    """Start every worker before waiting on any (shell strings run in bash, as a user would)."""
    workers = [
        subprocess.Popen(
            c,
            cwd=cwd,
            env=ENV,
            shell=isinstance(c, str),
            executable="/bin/bash" if isinstance(c, str) else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]


def check_trials_against_study(storage: str, study: str, n_trials: int, wandb: bool) -> list[optuna.trial.FrozenTrial]:
    """Each trial ran once, in a folder of its own named by its number, and that folder's
    overrides, summary and (one) W&B run are that trial's."""
    every = optuna.load_study(study_name=study, storage=open_storage(storage)).trials
    # Workers counting at the same instant may each ask for the last trial: the later ones are
    # told FAIL undrawn, as surplus that never counts, so exactly n_trials ran.
    surplus = [t for t in every if "surplus" in t.user_attrs]
    assert all(t.state.name == "FAIL" and not t.params and "run_dir" not in t.user_attrs for t in surplus)
    trials = [t for t in every if "surplus" not in t.user_attrs]
    assert len(trials) == n_trials and sorted(t.number for t in every) == list(range(len(every)))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert all(list(t.intermediate_values) == [1, 2] and t.intermediate_values[2] == t.value for t in trials), "each trial's curve is in the study"
    dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(dirs)) == len(trials)
    for trial, run_dir in zip(trials, dirs):
        assert run_dir.name == str(trial.number)
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()))
        assert {k: float(overrides[k]) for k in trial.params} == pytest.approx(trial.params)
        assert json.loads((run_dir / "summary.json").read_text())["objective"] == pytest.approx(trial.value)
        runs = list((run_dir / "wandb").glob("offline-run-*"))
        assert len(runs) == (1 if wandb else 0)
        if wandb:
            logged = read_offline_run(runs[0])
            assert logged.config["scheduler"]["max_lr"] == pytest.approx(trial.params["scheduler.max_lr"])
            assert logged.summary["final_eval_acc"] == pytest.approx(json.loads((run_dir / "summary.json").read_text())["final"]["eval_acc"])
            shown = run_dir.parent / "wandb" / runs[0].name
            assert shown.is_symlink() and shown.resolve() == runs[0].resolve(), "the sweep's wandb/ shows every trial's run (wandb leet)"
    return trials


def readme_journal_workers() -> list[str]:
    """docs/scaling.md's two journal-file worker commands, exactly as written there."""
    text = (REPO / "docs" / "scaling.md").read_text()
    section = text[text.index("## Several sweep workers on one study") :]
    commands = re.findall(r"^(CUDA_VISIBLE_DEVICES=\d python -m resnet_lab\.train -m hparams_search=optuna .*?) &$", section, re.MULTILINE)
    assert len(commands) == 2, "docs/scaling.md's journal example changed: update this test with it"
    return commands


def test_documented_journal_workers_started_together_never_share_a_trial_folder(tmp_path):
    """docs/scaling.md's commands, with the sizes of a CPU test appended; both start in the same second
    into the default time-named sweep folder, which each claims for itself."""
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    sizes = " ".join(["data=image_folder", f"data.root={tmp_path / 'im'}", *TRACKED, "hydra.sweeper.n_trials=3"])
    run_together([f"{command} {sizes}" for command in readme_journal_workers()], tmp_path)
    storage = f"journal:///{tmp_path / 'multirun' / 'study.log'}"
    trials = check_trials_against_study(storage, "resnet_lab", 3, wandb=True)
    sweep_dirs = sorted(p for p in (tmp_path / "multirun").glob("*/*") if p.is_dir())
    assert len(sweep_dirs) == 2, "each worker has a sweep folder of its own"
    reported = [n for d in sweep_dirs for n in (t["number"] for t in json.loads((d / "sweep_summary.json").read_text())["trials"])]
    assert sorted(reported) == [t.number for t in sorted(trials, key=lambda t: t.number)], "each worker reports the trials it ran"


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
    subprocess.run(
        [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(home / "pg.log"), "start"], check=True, capture_output=True
    )
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


PASSWORD = "pg-Secret-4711"


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@")


def test_workers_of_two_machines_share_a_postgresql_study_and_a_killed_worker_loses_nothing(tmp_path, postgres):
    """Two commands on one study, as on two machines: one starts two workers
    (hparams_search.workers=2), the other is a single sweep. All write into one sweep folder on
    purpose (machines sharing a file system); the storage URL carries a password, which no file
    the sweep wrote may contain, the workers' logs included."""
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    secret = with_password(postgres)
    two_workers = [*worker(tmp_path, secret, "shared-dir", seed=0, n_trials=3, tracked=True), "hparams_search.workers=2"]
    run_together([two_workers, worker(tmp_path, secret, "shared-dir", seed=7, n_trials=3, tracked=True)], tmp_path)
    check_trials_against_study(postgres, "shared", 3, wandb=True)
    assert sorted(p.name for p in (tmp_path / "shared-dir" / "workers").iterdir()) == ["0.log", "1.log"]
    plain = postgres.replace("postgresql+psycopg2://", "postgresql://")  # SQLAlchemy's default driver (psycopg 3)
    assert len([t for t in optuna.load_study(study_name="shared", storage=open_storage(plain)).trials if "surplus" not in t.user_attrs]) == 3
    report = json.loads((tmp_path / "shared-dir" / "sweep_summary.json").read_text())
    assert report["n_trials"] == 3, "the report covers the trials of every worker"
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaked == [], f"the database password was written to {leaked}"
    assert json.loads((tmp_path / "shared-dir" / "study.json").read_text())["storage"] == secret.replace(PASSWORD, "***")

    command = worker(tmp_path, postgres, "solo", seed=5, n_trials=3, study="solo")
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "solo" / "1" / "checkpoints" / "last.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert (tmp_path / "solo" / "1" / "checkpoints" / "last.pt").exists(), f"trial 1 saved no checkpoint within 300 s (exit code {process.poll()})"
    process.kill()
    process.wait()
    restarted = run_main(*command[2:-1], "hydra.sweep.dir=solo-again", cwd=tmp_path)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    study = optuna.load_study(study_name="solo", storage=postgres)
    trials, taken = study.trials, dict(interrupted_reasons(study))
    kept = [t for t in trials if t.state.name == "COMPLETE"]
    interrupted = [t for t in trials if t.number in taken]
    assert len(kept) == 3 and len(interrupted) == 1
    assert not (Path(interrupted[0].user_attrs["run_dir"]) / "summary.json").exists(), "the trial taken over is the one the kill cut short"
    assert all((Path(t.user_attrs["run_dir"]) / "summary.json").is_file() for t in kept)
    assert Path(kept[0].user_attrs["run_dir"]).parent.name == "solo"


def test_workers_started_by_one_command_stop_together_continue_never_wait_and_prune(tmp_path):
    """`hparams_search.workers=2` on a SQLite study. Ctrl-C to the command once both workers
    train: every worker stops and the message says how to go on. The next command (with the
    median pruner, judging against a finished trial that reached 0.99) replaces the two
    interrupted trials: each worker runs one trial at a time (each trial's start and end in the
    study are its own; how soon the next starts is benchmarks/sweep_overhead.py's), trials below the
    finished curve are pruned, and the study ends with exactly n_trials finished trials,
    reported in the one sweep folder."""
    write_image_folder(tmp_path / "im", train_per_class=24, test_per_class=8)
    storage = f"sqlite:///{tmp_path / 'workers.db'}"
    study = optuna.create_study(study_name="busy", storage=storage, direction="maximize")
    add_finished_trial(study, (0.01, 0.1), {1: 0.99, 2: 0.99})
    command = [*worker(tmp_path, storage, "busy-dir", seed=3, n_trials=5, study="busy"), "hparams_search.workers=2"]

    long = [arg for arg in command if not arg.startswith("trainer.epochs=")] + ["trainer.epochs=500"]
    # Started as a terminal starts it: SIGINT at its default even when this test process ignores
    # it (pytest run as a background job of a script), so Ctrl-C below reaches the command.
    process = subprocess.Popen(
        long, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    deadline = time.time() + 300
    while len(list((tmp_path / "busy-dir").glob("*/checkpoints/last.pt"))) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert len(list((tmp_path / "busy-dir").glob("*/checkpoints/last.pt"))) == 2, f"both workers train within 300 s (exit code {process.poll()})"
    process.send_signal(signal.SIGINT)
    # Each worker has STOP_GRACE_S to save its trial before it is killed; a hang still fails here.
    out, err = process.communicate(timeout=2 * STOP_GRACE_S + 60)
    assert process.returncode == 130, err[-3000:]
    assert "run the same command again to continue it" in out and err.strip().splitlines()[-1] == "interrupted"
    pids = [int(pid) for pid in re.findall(r"sweep worker \d started \(pid (\d+)", out)]
    assert len(pids) == 2 and not any(Path(f"/proc/{pid}").exists() for pid in pids), "no worker outlives the command"

    pruning = ["hparams_search.pruner.kind=median", "hparams_search.pruner.startup_trials=1", "hparams_search.pruner.warmup_epochs=0"]
    result = subprocess.run([*command, *pruning], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep worker 0 started" in result.stdout and "sweep worker 1 started" in result.stdout

    busy = optuna.load_study(study_name="busy", storage=storage)
    trials, taken = busy.trials, dict(interrupted_reasons(busy))
    interrupted = [t for t in trials if t.number in taken]
    assert len(interrupted) == 2 and all(t.state.name == "FAIL" for t in interrupted)
    assert all((Path(t.user_attrs["run_dir"]) / "checkpoints" / "last.pt").is_file() for t in interrupted), "their checkpoints are kept"
    ran = [t for t in trials if t.number > 0 and t.number not in taken and "surplus" not in t.user_attrs]
    assert len(ran) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    for trial in ran:
        first = trial.intermediate_values[1]
        assert (trial.state.name == "PRUNED") == (first < 0.99), "pruned exactly when below the finished trial's curve"
        if trial.state.name == "PRUNED":
            assert trial.user_attrs["pruned_at_epoch"] == 1 and list(trial.intermediate_values) == [1]
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in sorted(ran, key=lambda t: t.datetime_start):
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial)
    assert 1 <= len(by_worker) <= 2 and os.getpid() not in {int(w.rpartition(":")[2]) for w in by_worker}
    for mine in by_worker.values():
        for before, after in zip(mine, mine[1:]):
            assert before.datetime_complete <= after.datetime_start, "one trial at a time per worker, stamped with its own times"
    report = json.loads((tmp_path / "busy-dir" / "sweep_summary.json").read_text())
    assert sorted(t["number"] for t in report["trials"]) == sorted(t.number for t in [*ran, *interrupted])
    assert report["n_pruned"] == sum(t.state.name == "PRUNED" for t in ran)
    assert yaml.safe_load((tmp_path / "busy-dir" / "multirun.yaml").read_text())["hparams_search"]["workers"] == 2
