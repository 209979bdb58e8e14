"""resnet_lab: train, tune and explain the custom ResNet on CIFAR-10-sized images."""

from pathlib import Path

__version__ = "0.1.0"

_PACKAGE = Path(__file__).resolve().parent
# conf/ sits at the top of the repository so that the configs read like the top-level
# documentation they are; a wheel carries a copy inside the package (setup.py), which an
# installed resnet_lab uses. Every Hydra app points at this one directory.
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf").is_dir() else _PACKAGE.parent / "conf"
