"""Structured-config schemas, their registration in Hydra's ConfigStore, and validation."""

from resnet_lab.config.errors import ConfigError
from resnet_lab.config.schema import register_schemas, validate

__all__ = ["ConfigError", "register_schemas", "validate"]
