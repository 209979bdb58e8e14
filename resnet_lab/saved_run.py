"""A run on disk, as every command that reads one sees it: where it is (a run folder, a
checkpoint, a W&B run or artifact folder, a sweep's best trial), its saved config (checked before
it is trusted, then turned back into overrides and composed again over today's config tree),
its weights rebuilt for evaluation or inference, and new images read and normalised the way its
data was. reproduce, evaluate, predict and explain all read runs through here, share its command
line (the run, --best, valued options such as --out, one-line errors), and none of them imports
another."""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from omegaconf import OmegaConf

from resnet_lab.config.plain import plain_dict
from resnet_lab.config.schema import GROUPS, SCHEMAS
from resnet_lab.errors import EXIT_USAGE, DataError, ResnetLabError

# Keys of a saved config that describe where it came from rather than what it trains.
NOT_REPLAYED = ("resume_from", "reproduced_from", "hparams_search", "overrides", "hydra")
# Settings that are the reader's to choose: where outputs go, and what to do with an existing run.
READERS_CHOICE = ("data.cache_dir", "trainer.resume", "trainer.overwrite")
# Settings every evaluation runs with, whatever the run trained with: one process, no resume, no
# progress bar, and no tracker unless the command line names a logger (`logger=wandb`).
FIXED = ["trainer.strategy=single", "trainer.resume=false", "trainer.progress=false"]
EXTENSIONS = (".png", ".jpg", ".jpeg")


def command_line(argv: list[str] | None, doc: str, valued: tuple[str, ...] = ("--out",)) -> tuple[list[str], dict[str, str], bool]:
    """(the run and what follows it, the values of the `valued` options, --best) of a command
    that reads a saved run. No argument or --help prints `doc`; an option without its value
    ends the command with one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(doc)
        sys.exit(0 if args else EXIT_USAGE)
    options: dict[str, str] = {}
    for flag in valued:
        if flag in args:
            at = args.index(flag)
            if at + 1 >= len(args):
                print(f"error: {flag} needs a value", file=sys.stderr)
                sys.exit(EXIT_USAGE)
            options[flag] = args.pop(at + 1)
            args.pop(at)
    best = "--best" in args
    if best:
        args.remove("--best")
    return args, options, best


def output_folder(given: str | None, command: str) -> Path:
    """Where a command writes: --out, or outputs/<command>/<date>/<time> as Hydra names runs."""
    now = datetime.now()
    return Path(given) if given else Path("outputs") / command / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")


@contextmanager
def one_line_errors(out: Path | None = None) -> Iterator[None]:
    """A refusal inside ends the command: its one line on stderr, its exit code, and the output
    folder `out` removed again when nothing was written into it."""
    from resnet_lab.messages import one_line
    from resnet_lab.run_folder import discard_if_empty

    try:
        yield
    except ResnetLabError as error:
        if out is not None:
            discard_if_empty(out)
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)


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
        return _from_checkpoint(load_checkpoint(location), f"checkpoint {location}")
    if (location / ".hydra" / "config.yaml").is_file():
        config, choices = _from_hydra_dir(location)
        return config, choices, f"{location / '.hydra'}"
    # A run folder's own checkpoint before its W&B log: the checkpoint is written by the run
    # itself, complete when the run ends; the log is written by W&B's service, possibly later.
    for candidate in (location / "checkpoints" / LAST, location / "checkpoints" / BEST):
        if candidate.is_file():
            return _from_checkpoint(load_checkpoint(candidate), f"checkpoint {candidate}")
    if find_transaction_log(location) is not None:
        return read_offline_run(location).config, None, f"W&B run {find_transaction_log(location)}"
    loose = sorted(location.glob("*.pt"))  # a downloaded W&B model artifact holds its checkpoint loose
    if loose:
        return _from_checkpoint(load_checkpoint(loose[0]), f"checkpoint {loose[0]}")
    raise DataError(f"{location} holds no saved config (.hydra/config.yaml, checkpoints/*.pt, a W&B run log or a W&B model artifact's .pt)")


def _from_checkpoint(state: dict, source: str) -> tuple[dict, dict[str, str] | None, str]:
    """A checkpoint's config with the group options Hydra chose (None from a checkpoint written
    before they were stored: then they are inferred from each group's `_target_`)."""
    choices = state.get("choices")
    return state["config"], dict(choices) if isinstance(choices, dict) and choices else None, source


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


def _drop(config: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node.pop(leaf, None)


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


def quote(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(quote(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _leaves(prefix: str, node: Any) -> list[str]:
    if isinstance(node, dict):
        if not node:
            return [f"{prefix}={{}}"]
        return [item for key, value in node.items() for item in _leaves(f"{prefix}.{key}", value)]
    return [f"{prefix}={quote(node)}"]


def without_regrouped(overrides: list[str], extra: list[str]) -> list[str]:
    """The saved overrides minus every value of a group that `extra` switches to another option
    (e.g. logger=none): that option's own YAML then supplies the group's values."""
    regrouped = {o.split("=", 1)[0] for o in extra if o.split("=", 1)[0] in GROUPS}
    return [o for o in overrides if o.split("=", 1)[0].split(".", 1)[0] not in regrouped]


def saved_run(location: Path, extra: list[str]):
    """(typed config with `extra` on top, where it was read, the checkpoint's path, its loaded
    state): everything a command reads of a saved run, read once and checked before any data."""
    from resnet_lab.train.checkpoint import load_checkpoint, resolve_checkpoint

    run, source = saved_run_config(location, extra)
    checkpoint = resolve_checkpoint(location)
    return run, source, checkpoint, load_checkpoint(checkpoint)


def saved_run_config(location: Path, extra: list[str]):
    """(typed config of the run saved at `location` with `extra` on top and the fixed settings,
    where the config was read): what evaluate, predict and explain rebuild the run from."""
    from hydra import compose, initialize_config_dir

    from resnet_lab import CONF_DIR
    from resnet_lab.config import validate

    config, choices, source = load_saved_config(location)
    fixed = FIXED if any(o.startswith("logger=") for o in extra) else [*FIXED, "logger=none"]
    overrides = [*without_regrouped(overrides_for(config, choices), [*extra, *fixed]), *fixed, *extra]
    with initialize_config_dir(str(CONF_DIR)):
        return validate(compose("train", overrides=overrides)), source


def rebuild(run, checkpoint: Path, state: dict):
    """(an Evaluator holding the weights the run evaluated at the checkpoint's epoch, over the
    data `run` describes, classes, evaluation split name). No optimizer or schedule is built:
    scoring needs the model, its compiled form and the loaders only."""
    from resnet_lab.errors import DataError
    from resnet_lab.train.components import build_components
    from resnet_lab.train.ema import WeightAverage
    from resnet_lab.train.evaluator import Evaluator

    parts = build_components(run)
    saved_classes = list(state.get("classes") or [])
    if saved_classes and saved_classes != parts.classes:
        missing, added = sorted(set(saved_classes) - set(parts.classes)), sorted(set(parts.classes) - set(saved_classes))
        detail = f"missing {missing}, new {added}" if missing or added else "the same names in another order"
        raise DataError(f"the data's classes differ from the run's ({detail}); evaluate on data with the run's classes: {saved_classes}")
    try:
        saved = state["trainer"]
        parts.model.load_state_dict(saved["model"])
        average = saved.get("ema")
        # The loop scores the average in place of the live weights and keeps it after the last
        # epoch; a checkpoint from before then holds the live weights and the average apart.
        if average is not None and int(state.get("epoch", 0)) < run.trainer.epochs:
            weights = WeightAverage(parts.model, float(average["decay"]), int(average["every"]))
            weights.load_state_dict(average)
            weights.swap()
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{checkpoint} does not fit the model its config describes ({first})") from error
    evaluator = Evaluator(parts.model, parts.compiled or parts.model, parts.device, parts.precision, parts.compile_mode, parts.eval_loader, run.trainer.tta)
    return evaluator, parts.classes, parts.eval_name


def load_model(location: Path):
    """(model on its device in eval mode, classes, run config) from a run's saved config and weights."""
    from resnet_lab.config.targets import build_typed
    from resnet_lab.errors import DataError
    from resnet_lab.train.environment import select_device

    run, _, checkpoint, state = saved_run(location, [])
    classes = list(state.get("classes") or [])
    if not classes:
        raise DataError(f"{checkpoint} does not name its classes (saved by an older resnet_lab); evaluate it instead")
    model = build_typed(run.model, num_classes=len(classes))
    try:
        model.load_state_dict(state["trainer"]["model"])
    except (RuntimeError, KeyError) as error:
        raise DataError(f"{checkpoint} does not fit the model its config describes") from error
    return model.to(select_device(run.trainer)).eval(), classes, run


def image_files(paths: list[Path]) -> list[Path]:
    """The image files to read; entries of a folder that are not regular files are skipped by
    name. Only regular files are ever opened: a FIFO or a device would block a read for ever."""
    from resnet_lab.errors import DataError

    files: list[Path] = []
    others: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS)
            files += [p for p in found if p.is_file()]
            others += [p for p in found if not p.is_file() and not p.is_dir()]
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise DataError(f"{path} is not a regular file (a pipe, socket or device); pass image files or folders of images")
        else:
            raise DataError(f"{path} does not exist; pass image files or folders of images")
    for path in others:
        print(f"skipped (not a regular file): {path}", file=sys.stderr)
    if not files:
        raise DataError(f"no {'/'.join(EXTENSIONS)} images in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(files))  # a file named twice (itself and in its folder) is read once


def read_image(path: Path, size: int):
    """uint8 [3, size, size], or None when PIL cannot read the file."""
    import numpy as np
    import torch
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
    except Exception:  # noqa: BLE001 - any decoding failure: the file is named and skipped
        return None


def normalise(images, data):
    """Images of uint8 values as the run's model saw them: the loader's arithmetic, on the images' device."""
    import torch

    mean = torch.tensor(data.mean, device=images.device).view(1, -1, 1, 1) * 255
    inv_std = 1.0 / (torch.tensor(data.std, device=images.device).view(1, -1, 1, 1) * 255)
    return (images.float() - mean) * inv_std
