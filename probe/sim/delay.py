"""Delay models: how long a message takes from the engine to a destination.

Each model turns one uniform draw ``u`` in [0, 1) into seconds (`at`), so every message
costs the random stream exactly one draw for its delay, whatever the model: switching
`fixed` for `lognormal` on one destination leaves every other draw of that destination
where it was.
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, field_validator

from probe.sim.values import Duration, FrozenModel

DELAY_KINDS = ("fixed", "uniform", "lognormal")

# `inv_cdf(0)` is minus infinity; the smallest double above 0 stands in for it.
_TINY = 2.0**-53
_NORMAL = NormalDist()


class FixedDelay(FrozenModel):
    """Every message takes the same time: `{fixed: 300ms}`."""

    fixed: Duration

    def at(self, u: float) -> float:
        """The delay in seconds; `u` is ignored but still drawn by the caller."""
        del u
        return self.fixed

    def sample(self, rng: random.Random) -> float:
        """The delay for one message, costing `rng` one draw."""
        return self.at(rng.random())


class UniformDelay(FrozenModel):
    """A delay drawn evenly between two bounds: `{uniform: [100ms, 500ms]}`."""

    uniform: tuple[Duration, Duration]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError(f"lower bound {bounds[0]}s is above upper bound {bounds[1]}s")
        return bounds

    def at(self, u: float) -> float:
        """A delay in seconds between the two bounds, `u` of the way."""
        low, high = self.uniform
        return low + (high - low) * u

    def sample(self, rng: random.Random) -> float:
        """The delay for one message, costing `rng` one draw."""
        return self.at(rng.random())


class LognormalParams(FrozenModel):
    """Median and shape of a log-normal delay; sigma 0 means always the median."""

    median: Duration
    sigma: float = Field(ge=0.0)

    @field_validator("median")
    @classmethod
    def _positive(cls, median: float) -> float:
        if median <= 0:
            raise ValueError("median must be above 0")
        return median


class LognormalDelay(FrozenModel):
    """A long-tailed delay, the shape queueing gives: `{lognormal: {median: 200ms, sigma: 0.5}}`."""

    lognormal: LognormalParams

    def at(self, u: float) -> float:
        """The `u` quantile in seconds; half the draws are below the median."""
        # The inverse CDF, not `lognormvariate`: that one eats a varying number of draws.
        z = _NORMAL.inv_cdf(max(u, _TINY))
        return math.exp(math.log(self.lognormal.median) + self.lognormal.sigma * z)

    def sample(self, rng: random.Random) -> float:
        """The delay for one message, costing `rng` one draw."""
        return self.at(rng.random())


def _delay_kind(value: Any) -> str | None:
    """Which delay model a value is, by its single key; None lets pydantic report it."""
    if isinstance(value, dict):
        kinds = [kind for kind in DELAY_KINDS if kind in value]
        return kinds[0] if len(kinds) == 1 else None
    models: dict[type, str] = {
        FixedDelay: "fixed",
        UniformDelay: "uniform",
        LognormalDelay: "lognormal",
    }
    return models.get(type(value))


Delay = Annotated[
    Annotated[FixedDelay, Tag("fixed")]
    | Annotated[UniformDelay, Tag("uniform")]
    | Annotated[LognormalDelay, Tag("lognormal")],
    Discriminator(
        _delay_kind,
        custom_error_type="delay_kind",
        custom_error_message="expected exactly one of fixed, uniform, lognormal",
    ),
]
"""How long a message takes from the engine to a destination."""
