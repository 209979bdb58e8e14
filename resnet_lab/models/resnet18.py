"""torchvision's ResNet-18 with the CIFAR stem: the well-known reference the custom ResNet is
compared against, through the same configs, sweeps and galleries.

torchvision's ImageNet stem (7x7 stride-2 conv, then a max pool) leaves a 32x32 image 8x8 before
the first block. The CIFAR stem (He et al. 2016, section 4.2, as in most CIFAR ResNet-18 results)
is one 3x3 stride-1 conv and no pool, so the four stages see 32, 16, 8 and 4 pixels.
torchvision's blocks and weight initialisation are kept; there is no width multiplier, as
torchvision's BasicBlock fixes its widths.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet


class CifarResNet18(ResNet):
    gradcam_layer = "layer4"  # the last stage (4x4 maps at 32x32 input): explain.target_layer=null uses it

    def __init__(self, num_classes: int, logit_scale: float | None = None, bn_momentum: float = 0.1, zero_init_residual: bool = False) -> None:
        norm_layer = partial(nn.BatchNorm2d, momentum=bn_momentum)
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, zero_init_residual=zero_init_residual, norm_layer=norm_layer)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.logit_scale = logit_scale
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits if self.logit_scale is None else logits * self.logit_scale


def resnet18(num_classes: int | None, logit_scale: float | None, bn_momentum: float, zero_init_residual: bool) -> CifarResNet18:
    """Factory named by conf/model/resnet18.yaml (which holds every default); `num_classes=None` means 10."""
    return CifarResNet18(10 if num_classes is None else num_classes, logit_scale, bn_momentum, zero_init_residual)
