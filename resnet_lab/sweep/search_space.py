"""A sweep's search space, read the way hydra-optuna-sweeper reads it, with Hydra's public
override parser: `choice(...)` is categorical, `range(...)` an integer or stepped float range,
`interval(a, b)` uniform, `tag(log, interval(a, b))` log-uniform; anything else is a fixed value
every trial gets. Optuna is imported only when a sweep runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import ceil
from typing import TYPE_CHECKING, Any, cast

from resnet_lab.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override
    from optuna.distributions import BaseDistribution
    from optuna.trial import Trial


@dataclass(frozen=True)
class SearchSpace:
    distributions: dict[str, BaseDistribution]  # what the sampler draws, in the order given
    fixed: dict[str, Any]  # name -> value every trial gets (recorded as a trial attribute)
    deletions: list[str]  # `~key` overrides, passed to every job as written

    def overrides(self, drawn: dict[str, Any]) -> list[str]:
        """One job's command-line overrides: its drawn values, the fixed ones, the deletions."""
        return [f"{name}={value}" for name, value in {**drawn, **self.fixed}.items()] + self.deletions


def parse(arguments: list[str]) -> SearchSpace:
    """The search space of `hydra.sweeper.params` (as `key=value` strings) followed by the sweep's
    command-line overrides; a later key replaces an earlier one, as in the plugin."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from optuna.distributions import BaseDistribution

    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    deletions: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_delete():
            deletions.append(str(override.input_line))
            continue
        name = override.get_key_element()
        value = _distribution(override)
        if isinstance(value, BaseDistribution):
            distributions[name] = value
            fixed.pop(name, None)
        else:
            fixed[name] = value
            distributions.pop(name, None)
    return SearchSpace(distributions, fixed, deletions)


def _distribution(override: Override) -> Any:
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    key = override.get_key_element()
    if override.is_choice_sweep():
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        sweep = cast(RangeSweep, override.value())
        if sweep.step == 0:
            raise ConfigError(f"{key}: a range sweep needs a step other than 0")
        values = sweep.range()
        if sweep.shuffle or sweep.transformers:
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        if isinstance(values, range):
            if not values:
                raise ConfigError(f"{key}: the range sweep holds no value")
            low, high = sorted((values[0], values[-1]))
            return IntDistribution(low, high, step=abs(values.step))
        start, stop, step = Decimal(str(values.start)), Decimal(str(values.stop)), Decimal(str(values.step))
        count = ceil((Fraction(stop) - Fraction(start)) / Fraction(step))
        if count <= 0:
            raise ConfigError(f"{key}: the range sweep holds no value")
        last = start + (count - 1) * step  # Optuna includes both ends; Hydra's stop is exclusive
        first, final = sorted((float(start), float(last)))
        if Decimal(str(first)) != min(start, last) or Decimal(str(final)) != max(start, last):
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        return FloatDistribution(first, final, step=float(abs(step)))
    if override.is_interval_sweep():
        interval = cast(IntervalSweep, override.value())
        log = "log" in interval.tags
        if isinstance(interval.start, int) and isinstance(interval.end, int):
            return IntDistribution(int(interval.start), int(interval.end), log=log)
        return FloatDistribution(float(cast(float, interval.start)), float(cast(float, interval.end)), log=log)
    raise ConfigError(f"{override.input_line}: this sweep is not supported by the Optuna sweeper (use choice, range or interval)")


def grid(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """Every value of each parameter, for Optuna's GridSampler (discrete distributions only)."""
    from hydra.core.override_parser.types import FloatRange
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    choices: dict[str, list[Any]] = {}
    for name, distribution in distributions.items():
        if isinstance(distribution, CategoricalDistribution):
            choices[name] = list(distribution.choices)
        elif isinstance(distribution, IntDistribution):
            choices[name] = list(range(distribution.low, distribution.high + 1, distribution.step))
        elif isinstance(distribution, FloatDistribution) and distribution.step is not None:
            values = list(FloatRange(distribution.low, distribution.high, distribution.step))
            choices[name] = values if values and values[-1] == distribution.high else [*values, distribution.high]
        else:
            raise ConfigError(f"{name}: the grid sampler needs discrete values (choice or range), not {type(distribution).__name__}")
    return choices


def suggest(trial: Trial, name: str, distribution: BaseDistribution) -> Any:
    """Draw `name` from `distribution` through the trial's public suggest API."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step, log=distribution.log)
    raise ConfigError(f"{name}: cannot draw from {type(distribution).__name__}")
