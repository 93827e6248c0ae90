"""The simulator's config: one engine, any number of named destinations, outage windows.

    seed: 42
    truth: sim-truth.jsonl
    engine:
      listen: 127.0.0.1:18080
      outages: [{mode: stall, start: 1m, duration: 30s, stall: 10s}]
    destinations:
      labka:
        listen: 127.0.0.1:18081
        delay: {lognormal: {median: 400ms, sigma: 0.6}}
        loss: 0.02
        outages: [{mode: refuse, start: 2m, duration: 10s, every: 10m}]

Every problem is reported as a `ValueError` whose message names the file and the key.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from probe.durations import DurationOrZero

_DELAY_KINDS = ("fixed", "uniform", "lognormal")

# Offsets and delays may be zero; a window with no duration is refused by its model.
Duration = DurationOrZero
"""A non-negative number of seconds, written as `300ms`, `30s`, `5m`, `1h` or a number."""

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
"""A share of messages, 0 to 1."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedDelay(_Model):
    """Every message takes the same time: `{fixed: 300ms}`."""

    fixed: Duration

    def sample(self, rng: random.Random) -> float:
        """The delay in seconds; draws nothing, so the RNG stream is the same for every kind."""
        del rng
        return self.fixed


class UniformDelay(_Model):
    """A delay drawn evenly between two bounds: `{uniform: [100ms, 500ms]}`."""

    uniform: tuple[Duration, Duration]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[0] > bounds[1]:
            raise ValueError(f"lower bound {bounds[0]}s is above upper bound {bounds[1]}s")
        return bounds

    def sample(self, rng: random.Random) -> float:
        """A delay in seconds between the two bounds."""
        return rng.uniform(*self.uniform)


class LognormalParams(_Model):
    """Median and shape of a log-normal delay; sigma 0 means always the median."""

    median: Duration
    sigma: float = Field(ge=0.0)

    @field_validator("median")
    @classmethod
    def _positive(cls, median: float) -> float:
        if median <= 0:
            raise ValueError("median must be above 0")
        return median


class LognormalDelay(_Model):
    """A long-tailed delay, the shape queueing gives: `{lognormal: {median: 200ms, sigma: 0.5}}`."""

    lognormal: LognormalParams

    def sample(self, rng: random.Random) -> float:
        """A delay in seconds; half the draws are below the median."""
        return rng.lognormvariate(math.log(self.lognormal.median), self.lognormal.sigma)


def _delay_kind(value: Any) -> str | None:
    """Which delay model a value is, by its single key; None lets pydantic report it."""
    if isinstance(value, dict):
        kinds = [kind for kind in _DELAY_KINDS if kind in value]
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


class _Outage(_Model):
    start: Duration
    duration: Duration
    every: Duration | None = None

    @model_validator(mode="after")
    def _sane_window(self) -> _Outage:
        if self.duration <= 0:
            raise ValueError("duration must be above 0")
        if self.every is not None and self.every <= self.duration:
            raise ValueError("every must be longer than duration, or the outage never ends")
        return self


class DestinationOutage(_Outage):
    """A window when a destination misbehaves, measured from the simulator's start.

    `refuse` closes its port, `http_500` and `garbage` spoil its GET answers, `drop` loses
    what the engine forwards to it. With `every`, the window repeats with that period.
    """

    mode: Literal["refuse", "http_500", "garbage", "drop"]


class EngineOutage(_Outage):
    """A window when the engine misbehaves, measured from the simulator's start.

    `refuse` closes its port, `http_500` rejects posts, `drop` accepts and forwards nothing,
    `stall` holds each reply for `stall` seconds.
    """

    mode: Literal["refuse", "http_500", "drop", "stall"]
    stall: Duration = 60.0


def _parse_listen(value: object) -> str:
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host.strip("[]") or not port.isdigit():
        raise ValueError(f"invalid listen address {value!r}: expected host:port")
    if int(port) > 65535:
        raise ValueError(f"invalid listen address {value!r}: port above 65535")
    return value


Listen = Annotated[str, BeforeValidator(_parse_listen)]
"""`host:port` to listen on; port 0 picks a free one. IPv6 hosts go in brackets."""


class _Site(_Model):
    listen: Listen = "127.0.0.1:0"

    @property
    def host(self) -> str:
        """The host part of `listen`, without IPv6 brackets."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of `listen`; 0 means any free port."""
        return int(self.listen.rpartition(":")[2])


class EngineConfig(_Site):
    """The integration engine that takes in what the source system GS sends."""

    outages: list[EngineOutage] = []


class DestinationConfig(_Site):
    """A destination system and what happens on the way to it."""

    delay: Delay = FixedDelay(fixed=0.0)
    loss: Ratio = 0.0
    duplicates: Ratio = 0.0
    outages: list[DestinationOutage] = []


class SimConfig(_Model):
    """The whole simulated landscape. Same seed and same message order give the same run."""

    seed: int = 0
    truth: Path | None = None
    engine: EngineConfig = EngineConfig()
    destinations: dict[str, DestinationConfig] = {}

    @model_validator(mode="after")
    def _distinct(self) -> SimConfig:
        # Raised from here pydantic has no key to point at, so the messages carry their own.
        for name in self.destinations:
            if not name or name == "engine":
                raise ValueError(f"destinations: the name {name!r} is reserved or empty")
        seen: dict[int, str] = {self.engine.port: "engine"}
        for name, destination in self.destinations.items():
            other = seen.setdefault(destination.port, name)
            if destination.port and other != name:
                where = f"destinations.{name}.listen"
                raise ValueError(f"{where}: port {destination.port} is already used by {other}")
        return self


def parse_sim_config(data: object, *, source: str = "<config>") -> SimConfig:
    """Validate already-loaded data; `source` names it in error messages."""
    if data is None:  # an empty YAML file
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"invalid simulator config {source}: expected a mapping at the top level")
    try:
        return SimConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {_describe(error)}" for error in exc.errors())
        raise ValueError(f"invalid simulator config {source}:\n{problems}") from None


def load_sim_config(path: str | Path) -> SimConfig:
    """Read a simulator config from a YAML file.

    A relative `truth` path stays relative to the working directory, not to the file: the
    packaged demo config lives somewhere read-only.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid simulator config {path}: not valid YAML: {exc}") from None
    return parse_sim_config(data, source=str(path))


def _describe(error: Any) -> str:
    """One line per problem, `where: what`, in words an operator can act on."""
    location = ""
    previous = None
    for part in error["loc"]:
        # The tag pydantic puts after `delay` is its bookkeeping, not a key the user wrote.
        if not (previous == "delay" and part in _DELAY_KINDS):
            location += f"[{part}]" if isinstance(part, int) else f".{part}"
        previous = part
    location = location.lstrip(".")
    if not location:
        return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if error["type"] == "missing":
        return f"{location}: missing required key"
    if error["type"] == "value_error":
        return f"{location}: {error['ctx']['error']}"
    return f"{location}: {error['msg']}"
