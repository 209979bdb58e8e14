"""Read an offline W&B run back from its `run-<id>.wandb` file with wandb's own protobuf schema.

wandb >= 0.2x keeps an offline run only in that transaction log (no files/config.yaml), so this
is how `reproduce` recovers a run's config from a W&B run directory, and how tests check what
was logged. The file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of
chunks, each with a 7-byte header (checksum, length, kind: full / first / middle / last).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_lab.errors import DataError

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    exit_code: int | None = None


def find_transaction_log(location: Path) -> Path | None:
    """`run-*.wandb` in a W&B run dir, or in the newest offline run under a job's `wandb/`."""
    candidates = sorted(location.glob("run-*.wandb")) or sorted(location.glob("wandb/offline-run-*/run-*.wandb"))
    return candidates[-1] if candidates else None


def _chunks(data: bytes) -> list[bytes]:
    records, pending, position = [], b"", _HEADER
    while position + _HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        position += _HEADER
        if kind == 0 and length == 0:
            break
        chunk = data[position : position + length]
        position += length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
    return records


def _nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def read_offline_run(location: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    path = find_transaction_log(location)
    if path is None:
        raise DataError(f"no W&B run log (run-*.wandb) in {location} or {location}/wandb/offline-run-*/")
    if not path.read_bytes().startswith(b":W&B"):
        raise DataError(f"{path} is not a W&B run log")
    run = OfflineRun(path)
    for raw in _chunks(path.read_bytes()):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception as error:
            raise DataError(f"{path} is damaged ({type(error).__name__}: {error})") from error
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            run.name, run.group, run.job_type = record.run.display_name, record.run.run_group, record.run.job_type
            run.tags = list(record.run.tags)
        elif kind == "config":
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _nested(row, list(item.nested_key) or [item.key], json.loads(item.value_json))
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _nested(run.summary, list(item.nested_key) or [item.key], json.loads(item.value_json))
        elif kind == "artifact":
            run.artifacts.append((record.artifact.name, record.artifact.type))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run
