"""ARCHITECTURE.md names real files and functions: each path it quotes exists, and each
`file.py:Name` it quotes is defined in that file."""

from __future__ import annotations

import re

from conftest import REPO

QUOTED = re.compile(r"`([^`\s]+)`")


PACKAGES = {p.name for p in (REPO / "resnet_lab").iterdir() if p.is_dir() and not p.name.startswith("_")}


def named_paths() -> list[str]:
    """Quoted paths of the repository: under conf/ or resnet_lab/, a package of resnet_lab, or a
    .py file (run-folder names such as `checkpoints/` are what a run writes, not code)."""
    text = (REPO / "ARCHITECTURE.md").read_text()
    quoted = QUOTED.findall(text)
    return [q for q in quoted if q.startswith(("conf/", "resnet_lab/")) or q.split("/")[0] in PACKAGES or q.split(":")[0].endswith(".py")]


def resolve(quoted: str) -> tuple[str, str | None]:
    path, _, name = quoted.partition(":")
    name = name.split(".")[-1] or None
    path = re.sub(r"<[^>]+>", "*", path.split("(")[0])  # <name> placeholders match any file
    if not path.startswith(("resnet_lab/", "conf/", "tests/")) and not path.endswith(".md"):
        path = f"resnet_lab/{path}"
    return path, name


def test_every_path_and_name_in_architecture_md_exists():
    quoted = named_paths()
    assert len(quoted) > 30, "the page names the files it explains"
    missing = []
    for q in quoted:
        path, name = resolve(q)
        matches = sorted(REPO.glob(path.rstrip("/"))) if "*" in path else [REPO / path.rstrip("/")]
        if not matches or not all(m.exists() for m in matches):
            missing.append(q)
        elif name and not any(re.search(rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]", m.read_text(), re.M) for m in matches if m.is_file()):
            missing.append(q)
    assert not missing, f"ARCHITECTURE.md names what does not exist: {missing}"
