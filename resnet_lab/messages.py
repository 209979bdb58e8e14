"""Any exception as the one line a user reads: its message and causes, without Hydra's search
paths and object dumps, and with the allowed keys when a key was unknown."""

from __future__ import annotations

import re

from resnet_lab.config.schema import allowed_keys

_NOISE = re.compile(r"^(Config search path:|\s*provider=|\s*object_type=|Set the environment variable)")
_UNKNOWN_KEY = re.compile(r"Key '[^']+' not in '(\w+)'")


def one_line(error: BaseException) -> str:
    """The exception and its causes, without search paths or object dumps, on one line."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None:
        for line in str(current).splitlines():
            line = line.strip()
            if line and not _NOISE.match(line) and line not in parts:
                parts.append(line)
        current = current.__cause__
    text = "; ".join(parts) or type(error).__name__
    unknown = _UNKNOWN_KEY.search(text)
    if unknown and allowed_keys(unknown.group(1)):
        text += f"; allowed keys: {', '.join(allowed_keys(unknown.group(1)))}"
    return text
