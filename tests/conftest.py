"""Fixtures that write real files (image trees, CIFAR pickles) and run the real CLI."""

from __future__ import annotations

import os

# One thread per process: the two test processes (pytest-xdist) and the CLI processes they start
# share the cores, and torch's default of one thread per core oversubscribed them (measured on
# 2 cores: 4 tiny runs at once took 78-87 s with the default, 23-27 s with one thread each).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pickle
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

import resnet_lab.config  # noqa: F401  (registers the schemas)
from resnet_lab import CONF_DIR
from resnet_lab.process_cache import reset_all

REPO = Path(__file__).resolve().parent.parent
# The environment of CLI processes started as a user with nothing set would start them.
BARE_ENV = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]}
SHARED_TARBALL_CANDIDATES = [
    Path(os.environ.get("RESNET_LAB_CIFAR10_JPEG", "/nonexistent")),
    REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz",
]
CLASSES = ["ant", "bee", "cat"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests (real processes, real data) first, in their usual order: the two test processes
    then end on short tests together, instead of one waiting while the other runs a long one."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Tiny, fast settings every CLI test starts from: a 1/8-width net on CPU, quiet output.
TINY = [
    "model.width_multiplier=0.125",
    "trainer.device=cpu",
    "trainer.progress=false",
    "data.batch_size=8",
    "data.eval_batch_size=64",
    "logger=none",
    "explain=none",
]


def compose_config(overrides: list[str] = ()) -> DictConfig:
    with initialize_config_dir(str(CONF_DIR)):
        return compose("train", overrides=list(overrides))


def augmentation(option: str, *settings: str) -> Any:
    """The typed augmentation config of `option` (its YAML holds every default), with
    `key=value` settings of augmentation.<key>."""
    from resnet_lab.config import validate

    return validate(compose_config([f"augmentation={option}", *(f"augmentation.{s}" for s in settings)])).augmentation


def configured_model(*settings: str) -> torch.nn.Module:
    """A model built from its YAML option (the one home of its defaults): `model=<option>` picks
    it, `key=value` sets model.<key>."""
    from resnet_lab.config.targets import build

    cfg = compose_config([s if s.startswith("model=") else f"model.{s}" for s in settings])
    return build(cfg.model, num_classes=cfg.model.num_classes or 10)


def class_images(label: int, count: int, seed: int, size: int = 32) -> np.ndarray:
    """Images whose class shows in their colour and stripe direction, plus noise: learnable."""
    rng = np.random.default_rng(seed)
    base = np.zeros((count, size, size, 3), dtype=np.float32)
    base[..., label % 3] = 160
    stripes = (np.arange(size) // 4 % 2 * 60).astype(np.float32)
    base += stripes[None, :, None, None] if label % 2 else stripes[None, None, :, None]
    noisy = base + rng.normal(0, 25, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def add_finished_trial(study: Any, max_lr_bounds: tuple[float, float], curve: dict[int, float]) -> None:
    """A finished trial in a sweep's search space (max_lr within its bounds, weight_decay in the
    default range) with the learning curve `curve`, for a pruner to judge the sweep's trials by."""
    import optuna

    low, high = max_lr_bounds
    space = {
        "scheduler.max_lr": optuna.distributions.FloatDistribution(low, high, log=True),
        "optimizer.weight_decay": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
    }
    params = {"scheduler.max_lr": (low * high) ** 0.5, "optimizer.weight_decay": 1e-4}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=curve[max(curve)], intermediate_values=curve))
    from resnet_lab.sweep.optuna_sweeper import SELECTION_ATTR, selection

    data = compose_config(["hparams_search=optuna"]).data  # the split a default sweep measures on
    study.set_user_attr(SELECTION_ATTR, selection(data.val_fraction, data.split_seed))


def write_image_folder(root: Path, train_per_class: int = 24, test_per_class: int = 8, classes: list[str] = CLASSES) -> Path:
    """Each split and class draws its noise from its own fixed seed, so every run sees the same files."""
    for split_index, (split, count) in enumerate((("train", train_per_class), ("test", test_per_class))):
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, pixels in enumerate(class_images(label, count, seed=1000 * split_index + label)):
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return root


def write_cifar_batches(root: Path, per_batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The real format: pickled dicts with 'data' (N x 3072 uint8, channel-major) and 'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    all_data, all_labels = [], []
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as handle:
            pickle.dump({"batch_label": name, "data": data, "labels": labels, "filenames": [f"{i}.png" for i in range(per_batch)]}, handle)
        all_data.append(data)
        all_labels.append(labels)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"], "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(meta, handle)
    return np.concatenate(all_data), np.concatenate(all_labels)


@pytest.fixture(autouse=True)
def fresh_process_caches():
    """Each test starts as a new process would: no images, splits or compiled model kept by an
    earlier test (the disk cache of decoded images stays, as it does between processes)."""
    reset_all()
    yield
    reset_all()


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


# The real-data slice the tests train on: the first 500 training and 100 test images of each
# class of the JPEG copy (6,000 of its 60,000), so that no test pays for decoding all of them.
JPEG_SLICE = {"train": 500, "test": 100}


@pytest.fixture(scope="session")
def jpeg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of the JPEG copy (JPEG_SLICE), unpacked and decoded once per session: the test
    processes (pytest-xdist) share one folder under a file lock, and its decoded-image cache is
    filled before any test reads it."""
    from filelock import FileLock

    tarball = next((p for p in SHARED_TARBALL_CANDIDATES if p.is_file()), None)
    if tarball is None:
        pytest.skip("the shared JPEG copy of CIFAR-10 is not here (set RESNET_LAB_CIFAR10_JPEG=<cifar10-jpeg.tar.gz>)")
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each test process's own
    target = shared / "jpeg"
    with FileLock(str(shared / "jpeg.lock")):
        if not (target / "ready").is_file():
            with tarfile.open(tarball) as archive:
                wanted = [m for m in archive if m.isfile() and _in_slice(Path(m.name))]
                archive.extractall(target, members=wanted, filter="data")
            from resnet_lab.config import validate
            from resnet_lab.data import load_splits

            load_splits(validate(compose_config(["data=image_folder", f"data.root={target / 'cifar10-jpeg'}"])).data, target / "cifar10-jpeg")
            (target / "ready").touch()
    return target / "cifar10-jpeg"


def _in_slice(member: Path) -> bool:
    """cifar10-jpeg/<split>/<class>/NNNN.jpg with NNNN below the split's share of JPEG_SLICE."""
    parts = member.parts
    return len(parts) == 4 and parts[1] in JPEG_SLICE and member.stem.isdigit() and int(member.stem) < JPEG_SLICE[parts[1]]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """(working folder, the tiny settings on its small image folder, a finished 1-epoch run's
    folder): one per test module, which its tests read or copy but never change."""
    root = tmp_path_factory.mktemp("finished")
    write_image_folder(root / "im", train_per_class=24, test_per_class=4)
    args = ["data=image_folder", f"data.root={root / 'im'}", *TINY, "trainer.epochs=1"]
    done = run_main("resnet_lab.train", *args, "hydra.run.dir=run", cwd=root)
    assert done.returncode == 0, done.stderr
    return root, args, root / "run"


def run_cli(module: str, *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as its own process: for what only a process shows (signals,
    kills, launchers, start-up, the environment a user's shell gives)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "", "WANDB_MODE": "offline", **(env or {})}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_main(module: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` through the module's own `main()` in this process: the same
    command line, Hydra app, output and exit code, without the 5-6 s of imports a new process
    pays. The process-wide state a command may change (working directory, argv, environment,
    Hydra's globals, logging, torch's threads and determinism, resnet_lab's caches) is put back
    afterwards, the caches start empty as in a new process, and W&B is torn down as at a
    process's exit (its service writes a run's files after the run has finished)."""
    import contextlib
    import importlib
    import io
    import logging

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    entry = importlib.import_module(module if not (REPO / Path(*module.split("."))).is_dir() else f"{module}.__main__")
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    saved_threads, saved_deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out, err, code = io.StringIO(), io.StringIO(), 0
    os.environ.update({"WANDB_MODE": "offline", **(env or {})})
    os.environ.pop("HYDRA_FULL_ERROR", None)
    sys.argv = [module, *args]
    reset_all()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                entry.main()
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:], root.level = saved_handlers, saved_level
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # as at a process's exit: W&B's service flushes every run's files
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_deterministic)
        reset_all()
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
