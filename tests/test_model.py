import pytest
import torch
from torch import nn

from conftest import configured_model
from resnet_lab.models import CustomResNet
from resnet_lab.summary import format_rows, layer_table

# The seed's published summary: (layer, output shape, parameters).
SEED_TABLE = [
    ("Conv2d-1", (64, 32, 32), 1728),
    ("BatchNorm2d-2", (64, 32, 32), 128),
    ("ReLU-3", (64, 32, 32), 0),
    ("Conv2d-4", (128, 32, 32), 73728),
    ("MaxPool2d-5", (128, 16, 16), 0),
    ("BatchNorm2d-6", (128, 16, 16), 256),
    ("ReLU-7", (128, 16, 16), 0),
    ("Conv2d-8", (128, 16, 16), 147456),
    ("BatchNorm2d-9", (128, 16, 16), 256),
    ("ReLU-10", (128, 16, 16), 0),
    ("Conv2d-11", (128, 16, 16), 147456),
    ("BatchNorm2d-12", (128, 16, 16), 256),
    ("ReLU-13", (128, 16, 16), 0),
    ("ReLU-14", (128, 16, 16), 0),
    ("ResidualBlock-15", (128, 16, 16), 295424),
    ("Conv2d-16", (256, 16, 16), 294912),
    ("MaxPool2d-17", (256, 8, 8), 0),
    ("BatchNorm2d-18", (256, 8, 8), 512),
    ("ReLU-19", (256, 8, 8), 0),
    ("Conv2d-20", (512, 8, 8), 1179648),
    ("MaxPool2d-21", (512, 4, 4), 0),
    ("BatchNorm2d-22", (512, 4, 4), 1024),
    ("ReLU-23", (512, 4, 4), 0),
    ("Conv2d-24", (512, 4, 4), 2359296),
    ("BatchNorm2d-25", (512, 4, 4), 1024),
    ("ReLU-26", (512, 4, 4), 0),
    ("Conv2d-27", (512, 4, 4), 2359296),
    ("BatchNorm2d-28", (512, 4, 4), 1024),
    ("ReLU-29", (512, 4, 4), 0),
    ("ReLU-30", (512, 4, 4), 0),
    ("ResidualBlock-31", (512, 4, 4), 4720640),
    ("AvgPool2d-32", (512, 1, 1), 0),
    ("Linear-33", (10,), 5130),
]


def test_layer_table_matches_the_seed_summary():
    _, rows, total = layer_table(configured_model())
    assert [(r.name, r.output_shape, r.params) for r in rows] == SEED_TABLE
    assert total == 6_573_130
    assert "Total params: 6,573,130" in format_rows(rows, total)


def test_width_multiplier_shrinks_every_stage():
    model = configured_model("width_multiplier=0.125")
    _, rows, total = layer_table(model)
    assert rows[0].output_shape == (8, 32, 32) and rows[-2].output_shape == (64, 1, 1)
    assert total < 6_573_130 / 50


def test_head_options():
    x = torch.randn(2, 3, 32, 32)
    plain = configured_model("width_multiplier=0.125", "num_classes=7", "logit_scale=null").eval()
    assert plain(x).shape == (2, 7)
    scaled = configured_model("width_multiplier=0.125", "num_classes=7", "logit_scale=0.125").eval()
    scaled.load_state_dict(plain.state_dict())
    torch.testing.assert_close(scaled(x), plain(x) * 0.125)
    maxpool = configured_model("width_multiplier=0.125", "head_pool=max")
    assert isinstance(maxpool.pool, nn.MaxPool2d)
    with_dropout = configured_model("width_multiplier=0.125", "dropout=0.5")
    assert any(isinstance(m, nn.Dropout) for m in with_dropout.modules())
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


@pytest.mark.slow
def test_summary_cli_prints_the_table(tmp_path):
    from conftest import run_main

    result = run_main("resnet_lab.summary", "model.width_multiplier=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ResidualBlock-31" in result.stdout and "Linear-33" in result.stdout
    expected = sum(p.numel() for p in CustomResNet(num_classes=10, width_multiplier=0.5).parameters())
    assert f"Total params: {expected:,}" in result.stdout
