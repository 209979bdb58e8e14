"""The config groups a user chooses from, for --help: each group's options (the YAML files in
conf/<group>/) and what it sets (the comment on its entry in conf/train.yaml's defaults list), so
the help text has no second copy to keep up to date and never lists the internal schema/ groups."""

from __future__ import annotations

import re

from resnet_lab import CONF_DIR

_ENTRY = re.compile(r"^\s*-\s*(?P<group>[a-z_]+):\s*\S+\s*#\s*(?P<about>.+)$")


def groups_help() -> str:
    entries = [_ENTRY.match(line) for line in (CONF_DIR / "train.yaml").read_text().splitlines()]
    lines = []
    for entry in filter(None, entries):
        options = sorted(path.stem for path in (CONF_DIR / entry["group"]).glob("*.yaml"))
        lines.append(f"{entry['group']}: {', '.join(options)}\n    {entry['about'].strip()}")
    return "\n".join(lines)
