"""Hydra entry points whose failures are one readable line and a non-zero exit.

Hydra prints multi-line reports (search paths, object types) or tracebacks; we ask it to raise
instead (HYDRA_FULL_ERROR) and condense the exception here. A user who sets HYDRA_FULL_ERROR=1
still gets Hydra's full traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resnet_lab import CONF_DIR
from resnet_lab.config.groups_help import groups_help
from resnet_lab.config.targets import TRUSTED_TARGETS
from resnet_lab.errors import EXIT_USAGE, Reported, ResnetLabError
from resnet_lab.messages import one_line
from resnet_lab.secrets import mask_secrets
from resnet_lab.sweep.callbacks import register_folder_claim


def run_app(task: Callable[[DictConfig], Any], config_name: str) -> None:
    """Run `task` as a Hydra app over conf/ and report any failure as one line."""
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    refusal = _unsupported_rerun(sys.argv[1:], f"python -m resnet_lab.{config_name}")
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    _register_plugins()
    OmegaConf.register_resolver("resnet_lab_groups", groups_help, replace=True)
    register_folder_claim()

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, execution_whitelist=TRUSTED_TARGETS)
    def app(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except ResnetLabError as error:
            if HydraConfig.get().mode == RunMode.RUN and not wants_traceback:
                if error.refusal:
                    _discard_untouched_run_dir()
                raise Reported(error) from error
            raise

    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt as interrupt:
        if wants_traceback:
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(getattr(interrupt, "exit_code", 130))
    except Reported as reported:
        print(f"error: {mask_secrets(one_line(reported.error))}", file=sys.stderr)
        sys.exit(reported.error.exit_code)
    except Exception as error:
        if wants_traceback:
            raise
        hint = "" if isinstance(error, ResnetLabError) or _is_config_problem(error) else " (HYDRA_FULL_ERROR=1 shows the traceback)"
        # Hydra's parser echoes a faulty override whole: a password typed into it is masked.
        print(f"error: {mask_secrets(one_line(error))}{hint}", file=sys.stderr)
        sys.exit(error.exit_code if isinstance(error, ResnetLabError) else EXIT_USAGE)


def _discard_untouched_run_dir() -> None:
    """A refused run leaves nothing behind. Hydra makes the run folder (its .hydra/ and log)
    before the task starts; when the refusal came before anything else was written there, the
    folder goes again, with any parents it left empty (outputs/<date>/)."""
    from resnet_lab.run_folder import discard_untouched

    hydra_cfg = HydraConfig.get()
    discard_untouched(Path(hydra_cfg.runtime.output_dir), f"{hydra_cfg.job.name}.log", Path(hydra_cfg.runtime.cwd))


def _unsupported_rerun(args: list[str], command: str) -> str | None:
    """Hydra reruns a saved job with `--experimental-rerun <job dir>`: the job's own overrides
    (group choices included) composed again over resnet_lab's config tree, then any new ones.
    Its older forms point elsewhere: `--config-path`/`--config-dir <job>/.hydra` would replace
    that tree with the job's flat config.yaml (no group choices for the schemas to check), and
    Hydra 1.4 reads a job folder, not `config.pickle`. Those get the command that does rerun the
    job; a `--config-dir` of a user's own configs plugs in as Hydra documents."""
    for index, arg in enumerate(args):
        flag, _, value = arg.partition("=")
        if flag not in ("--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun"):
            continue
        target = Path(value or (args[index + 1] if index + 1 < len(args) else ""))
        saved = target.name == "config.pickle" or (target / "hydra.yaml").is_file() or target.name == ".hydra"
        run_dir = (target.parent if target.name == "config.pickle" else target).parent if saved else target
        rerun = f"{command} --experimental-rerun {run_dir} [key=value ...], or python -m resnet_lab.reproduce {run_dir}"
        if flag == "--experimental-rerun" and saved:
            return f"--experimental-rerun takes the job's folder, not its {target.name}: {rerun}"
        if flag in ("--config-dir", "-cd") and saved:
            return f"{flag} {target} would replace resnet_lab's config tree with the job's flat config.yaml; to rerun that job: {rerun}"
        if flag in ("--config-path", "-cp"):
            where = f"; to rerun the job in {run_dir}: {rerun}" if saved else ""
            return f"{flag} is not supported: resnet_lab composes its own config tree (add configs of yours with --config-dir <dir>){where}"
    return None


def _register_plugins() -> None:
    """Hydra's public registration, so `hydra.sweeper._target_` / `hydra.launcher._target_` can
    name our subclasses whether the package is pip-installed or only on PYTHONPATH (no
    hydra_plugins namespace package needed). The Ray launcher comes with the `scale` extra."""
    from hydra.core.plugins import Plugins

    from resnet_lab.sweep.optuna_sweeper import ResumableOptunaSweeper

    Plugins.instance().register(ResumableOptunaSweeper)
    try:
        from resnet_lab.sweep.ray_launcher import CheckedRayLauncher
    except ImportError:
        return
    Plugins.instance().register(CheckedRayLauncher)


def _is_config_problem(error: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(error, (HydraException, OmegaConfBaseException))
