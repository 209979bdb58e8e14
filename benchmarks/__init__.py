"""Benchmarks: `python -m benchmarks.cifar_speed` (README: Speed)."""
