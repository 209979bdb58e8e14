"""Secrets never leave the machine: a database password typed into a storage URL on the command
line must not reach W&B, Hydra's saved configs, sweep summaries or study attributes."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host ...: the password part of a URL's user info.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?P<tail>@)")
# ?password=... / &token=...: secrets given as URL query parameters or key=value pairs.
_KEY_VALUE = re.compile(r"(?P<head>\b(?:password|passwd|pwd|token|secret|api_key|apikey)=)(?P<secret>[^&\s'\"]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with every URL password and secret-named parameter replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], text)
    return _KEY_VALUE.sub(lambda m: m["head"] + MASK, text)


def has_secret(text: str) -> bool:
    return mask_secrets(text) != text


def without_masked_password(url: str) -> str:
    """A masked URL made usable again: the password dropped, so that the driver falls back to
    its own sources (libpq: PGPASSWORD or ~/.pgpass)."""
    return url.replace(f":{MASK}@", "@")
