"""Where an Optuna study lives: in memory, SQLite, a journal file or any SQLAlchemy database."""

from __future__ import annotations

import time
from pathlib import Path

import optuna

JOURNAL_PREFIX = "journal:///"


def absolute_storage(storage: str | None) -> str | None:
    """SQLite and journal URLs made absolute (their folder created), so every invocation and
    every worker finds the same file."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if storage and storage.startswith(prefix):
            path = Path(storage[len(prefix) :]).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"{prefix}{path}"
    return storage


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Optuna storage for a URL: None for one in-memory storage (every study object of the sweep
    must be handed this same object: `create_study(storage=None)` makes a new, empty one each
    call); `journal:///<file>` for Optuna's JournalStorage on a file (file locks, no server:
    recommended for several workers on one machine); else any SQLAlchemy URL. Workers starting
    together race to create a new database's tables; the loser retries."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
    from sqlalchemy.exc import IntegrityError, OperationalError

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(1, 10):
        try:
            return _database(url, engine)
        except (IntegrityError, OperationalError):
            time.sleep(0.2 * attempt)
    return _database(url, engine)


def _database(url: str, engine: dict) -> optuna.storages.BaseStorage:
    # Wrapped once here: every study object of this process then shares one cache; a separate
    # cache per load_study goes stale ("Record does not exist").
    return optuna.storages.get_storage(optuna.storages.RDBStorage(url, engine_kwargs=engine))
