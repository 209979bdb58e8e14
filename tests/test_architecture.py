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


# A private name of Hydra, hydra-optuna-sweeper or Optuna: a private module, or an attribute the
# sweep code used to reach into (a trial's id, a study's storage, the plugin's internals).
PRIVATE = re.compile(
    r"(hydra\._internal|hydra_optuna_sweeper\._impl|optuna\.\w+\._|"
    r"\._(trial_id|storage|suggest|configure_trials|get_directions|study_id|cached)\b|"
    r"hydra\.core\.utils\.\w+\s*=)"
)


def test_no_private_name_of_hydra_the_optuna_plugin_or_optuna_is_used():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "resnet_lab").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []
