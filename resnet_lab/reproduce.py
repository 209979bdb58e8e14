"""`python -m resnet_lab.reproduce <run_dir | checkpoint.pt | W&B run dir | sweep dir --best> [overrides...]`

Re-runs a finished run from the config it saved, into a new run directory, and prints the old and
new final metrics side by side. The saved config is turned back into command-line overrides (the
group choices, then every leaf value), so the rerun goes through exactly the same Hydra
composition and validation as any run, and extra overrides apply on top. With `--best`, the
location is a sweep directory (grid or Optuna) and its best complete trial is rerun.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from resnet_lab.config.plain import plain_dict
from resnet_lab.config.schema import GROUPS, SCHEMAS
from resnet_lab.errors import DataError, ResnetLabError

# Keys of a saved config that describe where it came from rather than what it trains.
NOT_REPLAYED = ("resume_from", "reproduced_from", "hparams_search", "overrides", "hydra")
# Settings that are the reader's to choose: where outputs go, and what to do with an existing run.
READERS_CHOICE = ("data.cache_dir", "trainer.resume", "trainer.overwrite")
METRICS = ("train_loss", "train_acc", "eval_loss", "eval_acc")


def _from_hydra_dir(run_dir: Path) -> tuple[dict, dict[str, str]]:
    """The config as saved, unresolved: resolving it here would read the reader's environment."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
        choices = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices, resolve=False)
    except Exception as error:
        raise DataError(f"the saved config in {run_dir / '.hydra'} is damaged ({type(error).__name__}: {error})") from error
    if not isinstance(config, dict) or not isinstance(choices, dict):
        raise DataError(f"{run_dir / '.hydra' / 'config.yaml'} is not a run config")
    return config, {str(k): v for k, v in choices.items() if not str(k).startswith("hydra") and v is not None}


def _project_interpolations() -> set[str]:
    """Interpolations the project's own options write (logger.mode reads WANDB_MODE): in a saved
    config they stand for the project default, which the reader's own config supplies."""
    from resnet_lab import CONF_DIR

    found: set[str] = set()
    for path in CONF_DIR.glob("*/*.yaml"):
        found |= {value for _, value in _leaf_items("", plain_dict(OmegaConf.load(path), resolve=False)) if isinstance(value, str) and "${" in value}
    return found


def _leaf_items(prefix: str, node: Any) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _leaf_items(f"{prefix}.{key}" if prefix else str(key), value)]
    if isinstance(node, list):
        return [item for index, value in enumerate(node) for item in _leaf_items(f"{prefix}[{index}]", value)]
    return [(prefix, node)]


def checked_shared_config(config: dict, choices: dict[str, str] | None, source: str) -> tuple[dict, dict[str, str] | None]:
    """A saved config is someone else's file: it may not pull values from the reader's environment
    (an `${oc.env:...}` or any other interpolation, refused with its key unless it is the
    project's own default, which is then left to the reader's config), name code to run outside
    the project's allow-list, or choose a group option that does not exist. Returns the config
    without the project-default interpolations."""
    from fnmatch import fnmatch

    from resnet_lab import CONF_DIR
    from resnet_lab.config.targets import TRUSTED_TARGETS

    defaults = _project_interpolations()
    kept = copy.deepcopy(config)
    for key, value in _leaf_items("", config):
        if isinstance(value, str) and "${" in value:
            if value not in defaults:
                raise DataError(
                    f"{source}: {key}={value!r} reads a value through an interpolation, which would be resolved from your environment; "
                    "a shared config must hold plain values (edit the file, or set the key yourself as an override)"
                )
            _drop(kept, key)
        if key.endswith("._target_") and not any(fnmatch(str(value), pattern) for pattern in TRUSTED_TARGETS):
            raise DataError(f"{source}: {key}={value!r} names code outside resnet_lab's allow-list ({', '.join(TRUSTED_TARGETS)})")
    for group, option in (choices or {}).items():
        folder = CONF_DIR / group
        if group in (*GROUPS, "experiment") and not (isinstance(option, str) and option.isidentifier() and (folder / f"{option}.yaml").is_file()):
            options = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            raise DataError(f"{source}: the saved choice {group}={option!r} is not an option of {group} ({options})")
    return kept, choices


def _drop(config: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node.pop(leaf, None)


def load_saved_config(location: Path) -> tuple[dict, dict[str, str] | None, str]:
    """(config, group choices when known, what it was read from), checked as a shared file."""
    config, choices, source = _read_saved_config(location)
    if not isinstance(config, dict):
        raise DataError(f"{source} holds no run config (found {type(config).__name__})")
    config, choices = checked_shared_config(config, choices, source)
    return config, choices, source


def _read_saved_config(location: Path) -> tuple[dict, dict[str, str] | None, str]:
    from resnet_lab.track.offline_run import find_transaction_log, read_offline_run
    from resnet_lab.train.checkpoint import BEST, LAST, load_checkpoint

    if not location.exists():
        raise DataError(f"{location} does not exist; pass a run directory, a checkpoint .pt file or a W&B run directory")
    if not location.is_dir() and not location.is_file():
        raise DataError(f"{location} is not a regular file or a folder; pass a run directory, a checkpoint .pt file or a W&B run directory")
    if location.is_file():
        return load_checkpoint(location)["config"], None, f"checkpoint {location}"
    if (location / ".hydra" / "config.yaml").is_file():
        config, choices = _from_hydra_dir(location)
        return config, choices, f"{location / '.hydra'}"
    # A run folder's own checkpoint before its W&B log: the checkpoint is written by the run
    # itself, complete when the run ends; the log is written by W&B's service, possibly later.
    for candidate in (location / "checkpoints" / LAST, location / "checkpoints" / BEST):
        if candidate.is_file():
            return load_checkpoint(candidate)["config"], None, f"checkpoint {candidate}"
    if find_transaction_log(location) is not None:
        return read_offline_run(location).config, None, f"W&B run {find_transaction_log(location)}"
    loose = sorted(location.glob("*.pt"))  # a downloaded W&B model artifact holds its checkpoint loose
    if loose:
        return load_checkpoint(loose[0])["config"], None, f"checkpoint {loose[0]}"
    raise DataError(f"{location} holds no saved config (.hydra/config.yaml, checkpoints/*.pt, a W&B run log or a W&B model artifact's .pt)")


def run_location(given: str, best: bool) -> Path:
    """The run a command is pointed at: `given` itself or, with --best, the best complete trial
    of the sweep folder `given` (grid or Optuna), which is printed. reproduce, evaluate, predict
    and explain all take their run this way."""
    location = Path(given).expanduser().resolve()
    if not best:
        return location
    from resnet_lab.sweep.report import best_trial_dir

    trial = best_trial_dir(location)
    print(f"best trial of {location}: {trial}")
    return trial


def infer_choices(config: dict) -> dict[str, str]:
    """Group options of a config saved without Hydra's choices (checkpoint, W&B run): the option
    whose YAML sets the same `_target_` / format / kind / enabled; every value is replayed
    afterwards anyway, so only the schema (the allowed keys) depends on this choice."""
    return {group: (_option_from_yaml(group, config.get(group, {})) or list(options))[0] for group, options in SCHEMAS.items()}


def _option_from_yaml(group: str, node: dict) -> list[str]:
    """Options whose YAML sets the same discriminating value as the saved node."""
    from resnet_lab import CONF_DIR

    found = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        option = plain_dict(OmegaConf.load(path), resolve=False)
        option = option.get(group, option)  # options packaged at _global_ (optimizer) nest their group
        keys = [k for k in ("_target_", "format", "kind", "enabled") if k in option and k in node]
        if keys and all(str(option[k]) == str(node[k]) for k in keys):
            found.append(path.stem)
    return found


def _quote(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_quote(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _leaves(prefix: str, node: Any) -> list[str]:
    if isinstance(node, dict):
        if not node:
            return [f"{prefix}={{}}"]
        return [item for key, value in node.items() for item in _leaves(f"{prefix}.{key}", value)]
    return [f"{prefix}={_quote(node)}"]


def without_regrouped(overrides: list[str], extra: list[str]) -> list[str]:
    """The saved overrides minus every value of a group that `extra` switches to another option
    (e.g. logger=none): that option's own YAML then supplies the group's values."""
    regrouped = {o.split("=", 1)[0] for o in extra if o.split("=", 1)[0] in GROUPS}
    return [o for o in overrides if o.split("=", 1)[0].split(".", 1)[0] not in regrouped]


def overrides_for(config: dict, choices: dict[str, str] | None) -> list[str]:
    chosen = choices or {}
    inferred = infer_choices(config)
    options = {group: chosen.get(group, inferred[group]) for group in GROUPS}
    result = [f"{group}={option}" for group, option in options.items()]
    if "experiment" in chosen:
        result.append(f"experiment={chosen['experiment']}")
    for key, value in config.items():
        if key in NOT_REPLAYED:
            continue
        if key in options and isinstance(value, dict):
            # Runs saved before the options had schemas of their own carry keys their option never
            # used (data.download with image_folder, logger.mode with none): those are not replayed.
            known = {f.name for f in fields(SCHEMAS[key][options[key]])}
            value = {k: v for k, v in value.items() if k in known and f"{key}.{k}" not in READERS_CHOICE}
        result += _leaves(key, value)
    return result


def final_metrics(run_dir: Path) -> dict[str, float]:
    path = run_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
        return {**{key: float(summary["final"][key]) for key in METRICS}, "best_eval_acc": float(summary["best_eval_acc"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is damaged ({type(error).__name__}: {error}); the run's metrics cannot be read") from None


def original_metrics(location: Path) -> dict[str, float] | None:
    run_dir = location.parent.parent if location.is_file() else location
    if (run_dir / "summary.json").is_file():
        return final_metrics(run_dir)
    from resnet_lab.track.offline_run import find_transaction_log, read_offline_run

    if location.is_dir() and find_transaction_log(location) is not None:
        summary = read_offline_run(location).summary
        mapping = {"train_loss": "train/loss", "train_acc": "train/acc", "eval_loss": "test/loss", "eval_acc": "test/acc", "best_eval_acc": "best_eval_acc"}
        return {k: summary[v] for k, v in mapping.items() if v in summary}
    return None


def comparison_table(old: dict[str, float] | None, new: dict[str, float]) -> str:
    lines = [f"{'metric':<15}{'original':>14}{'rerun':>14}{'difference':>14}"]
    for key, value in new.items():
        before = None if old is None else old.get(key)
        diff = "" if before is None else f"{value - before:+.6g}"
        lines.append(f"{key:<15}{'n/a' if before is None else f'{before:.6g}':>14}{value:>14.6g}{diff:>14}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from resnet_lab.messages import one_line

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if args else 2)
    best = "--best" in args
    if best:
        args.remove("--best")
    extra = args[1:]
    try:
        location = run_location(args[0], best)
        config, choices, source = load_saved_config(location)
        overrides = without_regrouped(overrides_for(config, choices), extra)
        original = original_metrics(location)  # read now: nothing of the original is read after the rerun
        new_dir = run_dir_override(extra, location)
    except ResnetLabError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
    if new_dir is None:
        new_dir = str(Path("outputs") / "reproduce" / datetime.now().strftime("%Y-%m-%d") / datetime.now().strftime("%H-%M-%S"))
        extra.append(f"hydra.run.dir={new_dir}")
    print(f"reproducing {location} from {source} into {new_dir}", flush=True)
    code = run_forwarding([sys.executable, "-m", "resnet_lab.train", *overrides, f"reproduced_from={_quote(str(location))}", *extra])
    if code != 0:
        sys.exit(code)
    print(comparison_table(original, final_metrics(Path(new_dir))))


def run_forwarding(command: list[str]) -> int:
    """Runs the rerun as the command a user would type (its own process, its own argv), its
    output passed on line by line as it comes; returns its exit code."""
    import subprocess
    import threading

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def forward(source: Any, target: Any) -> None:
        for line in source:
            target.write(line)
            target.flush()

    streams = [threading.Thread(target=forward, args=(process.stdout, sys.stdout)), threading.Thread(target=forward, args=(process.stderr, sys.stderr))]
    for stream in streams:
        stream.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = process.wait()  # the rerun got the same Ctrl-C, saves its state and says how to resume
    for stream in streams:
        stream.join()
    return code


def run_dir_override(extra: list[str], location: Path) -> str | None:
    """The rerun's folder named on the command line; never the run being reproduced (nor a folder
    inside it), which is the one copy the rerun is compared with."""
    from resnet_lab.errors import ConfigError

    new_dir = next((o.split("=", 1)[1] for o in extra if o.startswith("hydra.run.dir=")), None)
    original = location.parent.parent if location.is_file() and location.parent.name == "checkpoints" else location
    if new_dir is not None and Path(new_dir).expanduser().absolute().resolve().is_relative_to(original.resolve()):
        raise ConfigError(f"hydra.run.dir={new_dir} is the run being reproduced; a rerun goes into a folder of its own (drop hydra.run.dir or name a new one)")
    return new_dir


if __name__ == "__main__":
    main()
