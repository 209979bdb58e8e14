"""The custom ResNet: the ResNet-9 layout of the seed, layer for layer.

Every ReLU is its own module (none reused) and the pooling layers come before their BatchNorm,
so a layer summary lists exactly the seed's table; tests pin it.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_lab.config.schema import HeadPool

BASE_WIDTHS = (64, 128, 256, 512)


class ConvBNReLU(nn.Sequential):
    """3x3 conv (no bias: BatchNorm follows), optional 2x2 max-pool, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = False, bn_momentum: float = 0.1) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(out_channels, momentum=bn_momentum), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two conv-BN-ReLU added to the block's input, then a ReLU."""

    def __init__(self, channels: int, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=bn_momentum)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu_out = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        return self.relu_out(x + y)


class CustomResNet(nn.Module):
    """prep 64 -> 128 + residual -> 256 -> 512 + residual -> pool -> linear."""

    gradcam_layer = "layer3.1"  # the last residual block (4x4 maps): explain.target_layer=null uses it

    def __init__(
        self,
        num_classes: int,
        width_multiplier: float = 1.0,
        dropout: float = 0.0,
        head_pool: str = "avg",
        logit_scale: float | None = None,
        in_channels: int = 3,
        bn_momentum: float = 0.1,
        bn_scale_trainable: bool = True,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = (max(1, round(base * width_multiplier)) for base in BASE_WIDTHS)
        m = bn_momentum
        self.prep = ConvBNReLU(in_channels, w1, bn_momentum=m)
        self.layer1 = nn.Sequential(ConvBNReLU(w1, w2, pool=True, bn_momentum=m), ResidualBlock(w2, bn_momentum=m))
        self.layer2 = ConvBNReLU(w2, w3, pool=True, bn_momentum=m)
        self.layer3 = nn.Sequential(ConvBNReLU(w3, w4, pool=True, bn_momentum=m), ResidualBlock(w4, bn_momentum=m))
        # A 32x32 input is 4x4 here; a fixed 4x4 window keeps the seed's AvgPool2d layer.
        self.pool = nn.AvgPool2d(4) if head_pool == "avg" else nn.MaxPool2d(4)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc = nn.Linear(w4, num_classes)
        self.logit_scale = logit_scale
        self.num_classes = num_classes
        if not bn_scale_trainable:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.weight.requires_grad_(False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(self.prep(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        if self.dropout is not None:
            x = self.dropout(x)
        x = self.fc(x)
        if self.logit_scale is not None:
            x = x * self.logit_scale
        return x


def custom_resnet(
    num_classes: int | None,
    width_multiplier: float,
    dropout: float,
    head_pool: HeadPool | str,
    logit_scale: float | None,
    bn_momentum: float,
    bn_scale_trainable: bool,
) -> CustomResNet:
    """Factory named by conf/model/custom_resnet.yaml (which holds every default); `num_classes=None` means 10."""
    return CustomResNet(
        num_classes=10 if num_classes is None else num_classes,
        width_multiplier=width_multiplier,
        dropout=dropout,
        head_pool=HeadPool(head_pool).value,
        logit_scale=logit_scale,
        bn_momentum=bn_momentum,
        bn_scale_trainable=bn_scale_trainable,
    )
