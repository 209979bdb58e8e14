"""Optimizers and per-step LR schedules (config groups `optimizer`, `scheduler`): build them with
resnet_lab.optim.optimizers.build_optimizer and resnet_lab.optim.schedulers.build_scheduler."""
