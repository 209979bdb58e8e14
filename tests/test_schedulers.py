import pytest
import torch

from conftest import compose_config, configured_model
from resnet_lab.config import validate
from resnet_lab.optim.optimizers import build_optimizer
from resnet_lab.optim.schedulers import build_scheduler


def lrs(scheduler_overrides: list[str], steps_per_epoch: int = 10, epochs: int = 4) -> list[float]:
    cfg = compose_config(scheduler_overrides)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(validate(cfg).optimizer, model, lr=float(cfg.scheduler.max_lr), batch_size=cfg.data.batch_size)
    scheduler = build_scheduler(validate(cfg).scheduler, optimizer, steps_per_epoch, epochs, max_lr=float(cfg.scheduler.max_lr))
    seen = []
    for _ in range(steps_per_epoch * epochs):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_onecycle_peaks_at_max_lr_after_pct_start():
    seen = lrs(["scheduler=onecycle", "scheduler.max_lr=0.2", "scheduler.pct_start=0.25", "scheduler.div_factor=10"])
    assert seen[0] == pytest.approx(0.02)
    assert max(seen) == pytest.approx(0.2) and seen.index(max(seen)) in (9, 10)
    assert min(seen) > 0 and seen[-1] < 0.01


def test_cosine_warms_up_then_decays_to_min_lr():
    seen = lrs(["scheduler=cosine", "scheduler.max_lr=0.1", "scheduler.warmup_epochs=1", "scheduler.min_lr=0.001"])
    assert seen[0] == pytest.approx(0.01) and seen[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(seen[10:], seen[11:])) and seen[-1] == pytest.approx(0.001, abs=1e-3)


def test_step_and_constant():
    seen = lrs(["scheduler=step", "scheduler.max_lr=0.1", "scheduler.step_epochs=2", "scheduler.gamma=0.5"])
    assert seen[0] == pytest.approx(0.1) and seen[19] == pytest.approx(0.1) and seen[20] == pytest.approx(0.05)
    assert all(lr == pytest.approx(0.03) for lr in lrs(["scheduler=constant", "scheduler.max_lr=0.03"]))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
def test_norm_bias_lr_scale_multiplies_the_lr_of_1d_parameters_at_every_step(schedule):
    cfg = compose_config([f"scheduler={schedule}", "scheduler.max_lr=0.1", "optimizer.norm_bias_lr_scale=64", "optimizer.weight_decay=6.4e-3"])
    model = configured_model("width_multiplier=0.125")
    optimizer = build_optimizer(validate(cfg).optimizer, model, lr=0.1, batch_size=cfg.data.batch_size)
    scheduler = build_scheduler(validate(cfg).scheduler, optimizer, steps_per_epoch=10, epochs=3, max_lr=0.1)
    weights, norms = optimizer.param_groups
    assert all(p.ndim > 1 for p in weights["params"]) and all(p.ndim == 1 for p in norms["params"])
    assert norms["weight_decay"] == pytest.approx(1e-4) and weights["weight_decay"] == pytest.approx(6.4e-3)
    for _ in range(30):
        assert norms["lr"] == pytest.approx(64 * weights["lr"])
        optimizer.step()
        scheduler.step()


def train_steps(overrides: list[str], max_lr: float, steps: int = 12) -> tuple[list[float], list[torch.Tensor]]:
    """(each group's LR times its decay coefficient, per step; the final weights) of a small net
    trained on fixed random data under the one-cycle schedule."""
    torch.manual_seed(0)
    model = configured_model("width_multiplier=0.125")
    cfg = compose_config(["scheduler=onecycle", f"scheduler.max_lr={max_lr}", "data.batch_size=16", *overrides])
    optimizer = build_optimizer(validate(cfg).optimizer, model, lr=max_lr, batch_size=16)
    scheduler = build_scheduler(validate(cfg).scheduler, optimizer, steps_per_epoch=steps // 3, epochs=3, max_lr=max_lr)
    images, labels = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    per_step = []
    for _ in range(steps):
        per_step += [value for g in optimizer.param_groups for value in (g["lr"], g["lr"] * g["weight_decay"])]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()
    return per_step, [p.detach().clone() for p in model.parameters()]


def test_decoupled_sgd_is_the_torch_run_it_converts_to():
    momentum, batch, torch_lr, torch_decay = 0.85, 16, 0.05, 5e-4
    scale = batch / (1024 * (1 + 1 / (1 - momentum)))
    common = [f"optimizer.momentum={momentum}", "optimizer.norm_bias_lr_scale=8"]
    plain_steps, plain_weights = train_steps([*common, f"optimizer.weight_decay={torch_decay}"], torch_lr)
    decoupled_lr = torch_lr / scale
    decoupled_steps, decoupled_weights = train_steps(
        [*common, "optimizer.decoupled=true", f"optimizer.weight_decay={torch_decay * decoupled_lr}"], decoupled_lr
    )
    assert decoupled_steps == pytest.approx(plain_steps, rel=1e-9)
    for a, b in zip(plain_weights, decoupled_weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_decoupled_sgd_takes_airbench94s_numbers_to_its_torch_settings():
    cfg = compose_config(["optimizer.decoupled=true", "optimizer.momentum=0.85", "optimizer.weight_decay=0.0153", "optimizer.norm_bias_lr_scale=64"])
    optimizer = build_optimizer(validate(cfg).optimizer, configured_model("width_multiplier=0.125"), lr=11.5, batch_size=1024)
    weights, norms = optimizer.param_groups
    assert weights["lr"] == pytest.approx(1.5) and norms["lr"] == pytest.approx(96.0)  # 11.5 / (1 + 1/0.15); x 64
    assert weights["weight_decay"] == pytest.approx(0.0153 / 11.5) and norms["weight_decay"] == pytest.approx(0.0153 / 11.5 / 64)
    doubled = build_optimizer(validate(cfg).optimizer, configured_model("width_multiplier=0.125"), lr=23.0, batch_size=1024).param_groups[0]
    assert doubled["lr"] * doubled["weight_decay"] == pytest.approx(weights["lr"] * weights["weight_decay"]), "decay per step ignores max_lr"


def test_speedrun_configs_note_on_its_decoupled_values_holds():
    def groups(overrides: list[str]) -> list[tuple[float, float]]:
        cfg = compose_config(["experiment=speedrun", *overrides])
        optimizer = build_optimizer(
            validate(cfg).optimizer, configured_model("width_multiplier=0.125"), lr=float(cfg.scheduler.max_lr), batch_size=cfg.data.batch_size
        )
        return [(g["lr"], g["lr"] * g["weight_decay"]) for g in optimizer.param_groups]

    plain = groups([])
    decoupled = groups(["optimizer.decoupled=true", "scheduler.max_lr=8.8", "optimizer.weight_decay=0.0044"])
    assert [x for pair in decoupled for x in pair] == pytest.approx([x for pair in plain for x in pair])
