"""Where an Optuna study lives: in memory, SQLite, a journal file or any SQLAlchemy database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_lab.errors import ConfigError
from resnet_lab.messages import one_line
from resnet_lab.secrets import mask_secrets

JOURNAL_PREFIX = "journal:///"
CONNECT_TIMEOUT_S = 2

if TYPE_CHECKING:
    import optuna


def study_url(storage: str | None) -> str | None:
    """A storage URL as the sweep records it (study.json): SQLite and journal files absolute, a
    password masked. Reads no file and imports no database driver."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if storage and storage.startswith(prefix):
            return f"{prefix}{Path(storage[len(prefix) :]).expanduser().resolve()}"
    return None if storage is None else mask_secrets(storage)


def absolute_storage(storage: str | None) -> str | None:
    """SQLite and journal URLs made absolute (their folder created), so every invocation and
    every worker finds the same file."""
    path = storage_file(study_url(storage))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"hydra.sweeper.storage={storage}: cannot create {path.parent} ({error.strerror or error})") from None
        return study_url(storage)
    return storage


def storage_file(url: str | None) -> Path | None:
    """The file of a SQLite or journal URL; None for other storages."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if url and url.startswith(prefix):
            return Path(url[len(prefix) :])
    return None


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """Optuna storage for a URL: None for one in-memory storage (every study object of the sweep
    must be handed this same object: `create_study(storage=None)` makes a new, empty one each
    call); `journal:///<file>` for Optuna's JournalStorage on a file (file locks, no server:
    recommended for several workers on one machine); else any SQLAlchemy URL. Workers starting
    together race to create a new database's tables; the loser retries."""
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX) :]))
        return _database(url)
    except Exception as error:  # noqa: BLE001 - whatever the driver says, the user reads one line
        raise ConfigError(f"hydra.sweeper.storage={mask_secrets(url)} cannot be opened: {mask_secrets(one_line(error))}") from None


def _database(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage; a server that does not answer is reported within CONNECT_TIMEOUT_S. Only a
    race between workers creating the same tables (or a locked SQLite file) is retried."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    for attempt in range(1, 10):
        try:
            return _rdb(url, engine)
        except (IntegrityError, OperationalError) as error:
            if isinstance(error, OperationalError) and not any(word in str(error) for word in ("already exists", "locked")):
                raise
            time.sleep(0.2 * attempt)
    return _rdb(url, engine)


def _rdb(url: str, engine: dict) -> optuna.storages.BaseStorage:
    import optuna

    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        event.listen(storage.engine, "connect", _write_ahead_log)
        storage.engine.dispose()  # the connections opened so far reconnect with it
    # Wrapped once here: every study object of this process then shares one cache; a separate
    # cache per load_study goes stale ("Record does not exist").
    return optuna.storages.get_storage(storage)


def _write_ahead_log(connection: Any, _record: Any) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints: a commit then costs no fsync, and
    a trial makes five or more; readers never wait for a writer either, which workers sharing
    the file need. A crash of the process loses nothing; a power cut may lose the last commits,
    never the file. The processes must share one machine (WAL needs shared memory): across
    machines, use PostgreSQL."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
