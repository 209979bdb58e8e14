"""One-line user errors: every bad setting or bad input ends as a single readable line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing problem (bad setting, bad data) whose message is the whole story.

    The CLI prints the message on one line and exits non-zero, without a traceback, so the
    message must name the key or path, the offending value and what is allowed.
    """


def require(condition: bool, key: str, value: object, allowed: str) -> None:
    """Raise `ConfigError("key=value: allowed")` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")
