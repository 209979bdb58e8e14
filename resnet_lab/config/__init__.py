"""Structured-config schemas, their registration in Hydra's ConfigStore, and validation."""

from resnet_lab.config.schema import RunConfig, register_schemas, validate
from resnet_lab.errors import ConfigError

__all__ = ["ConfigError", "RunConfig", "register_schemas", "validate"]
