"""hydra-ray-launcher that refuses, in one line, a job the Ray cluster can never place.

Ray queues a task whose resource request no node can satisfy and waits for a node that may
never join, so a sweep asking for a GPU on a CPU-only cluster would hang without a word. Every
job of a multirun asks for the same `hydra.launcher.ray.remote` resources; they are checked
against each live node once the cluster is joined, before any job is submitted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher

from resnet_lab.config.plain import plain_dict
from resnet_lab.errors import ConfigError

# Keys of ray.remote options and the node resource each one draws on.
_RESOURCE_OF = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}


class CheckedRayLauncher(RayLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import ray

        if not ray.is_initialized():
            ray.init(**plain_dict(self.ray_cfg.init))
        request = plain_dict(self.ray_cfg.remote)
        check_placeable(request, [node["Resources"] for node in ray.nodes() if node.get("Alive")])
        # A Ray task runs in a working directory of Ray's, where a relative sweep folder is another folder.
        assert self.config is not None, "Hydra sets the launcher up before it launches"
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        return super().launch([[*overrides, f"hydra.sweep.dir='{sweep_dir}'"] for overrides in job_overrides], initial_job_idx)


def check_placeable(remote: dict[str, Any], nodes: list[dict[str, float]]) -> None:
    """Raise unless one node alone holds everything one job asks for."""
    wanted = {_RESOURCE_OF[key]: float(value) for key, value in remote.items() if key in _RESOURCE_OF and value}
    wanted |= {name: float(amount) for name, amount in (remote.get("resources") or {}).items()}
    if any(all(node.get(name, 0.0) >= amount for name, amount in wanted.items()) for node in nodes):
        return
    asked = ", ".join(f"{name} {amount:g}" for name, amount in wanted.items())
    have = "; ".join(", ".join(f"{name} {node.get(name, 0.0):g}" for name in wanted) for node in nodes) or "no live node"
    raise ConfigError(
        f"the Ray cluster can never run these jobs: each asks for {asked} (hydra.launcher.ray.remote), but its live "
        f"nodes have: {have}; lower hydra.launcher.ray.remote.num_gpus / num_cpus, or add nodes that have them"
    )
