"""Model factories (config group `model`)."""

from resnet_lab.models.custom_resnet import CustomResNet, ResidualBlock, custom_resnet

__all__ = ["CustomResNet", "ResidualBlock", "custom_resnet"]
