"""resnet_lab: train, tune and explain the custom ResNet on CIFAR-10-sized images."""

from pathlib import Path

__version__ = "0.1.0"

# conf/ lives beside the package (not inside it) so that the configs read like the top-level
# documentation they are; every Hydra app points at this one directory.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
