"""`python -m benchmarks.cifar_speed`: the framework's speed, side by side, on one GPU.

Parts (all on the same data, the JPEG copy of CIFAR-10 by default):
  speedrun  experiment=speedrun over several seeds through the framework's own path
  airbench  airbench94 (PyPI package) over the same seeds, on the same data
  baseline  the seed's recipe the seed's way: torchvision DataLoader, CPU transforms, fp32
  bare      the speedrun's model, optimizer and GPU tensors in a minimal hand-written loop
  sweep     an Optuna sweep of speedrun trials in one process, against one trial alone
  profile   one speedrun epoch under torch.profiler: kernels, gaps between them, host time in ops
Timing follows airbench's rules: training plus the final (TTA) evaluation, data already on the
device, compile warm-up excluded and reported on its own. Writes benchmarks/results/<date>-<gpu>.json
and prints a table. `--tiny` shrinks everything to CPU size (the tests run it so it cannot rot).
One module per part, sharing common.py's timing helper and settings.
"""

from benchmarks.cifar_speed.cli import main
from benchmarks.cifar_speed.common import PARTS, TINY, TINY_IMAGES, tiny_on
from benchmarks.cifar_speed.kernel_profile import covered_seconds
from benchmarks.cifar_speed.report import judge, run_part, table
from benchmarks.cifar_speed.versus_airbench import airbench_result

__all__ = ["PARTS", "TINY", "TINY_IMAGES", "airbench_result", "covered_seconds", "judge", "main", "run_part", "table", "tiny_on"]
