"""The simulator's config: two engines, any number of named destinations, outage windows.

    seed: 42                          # one random stream per destination, seeded "{seed}:{name}"
    truth: sim-truth.jsonl            # the ground-truth log; omit for memory only
    engine:                           # the HTTP engine: POST /gs/events, GET /health
      listen: 127.0.0.1:18080
      outages: [{mode: stall, start: 1m, duration: 30s, stall: 10s}]
    mllp_engine:                      # optional: the HL7 engine GS sends to over MLLP
      listen: 127.0.0.1:0
      encoding: latin-1               # how it decodes what GS sends: utf-8 | latin-1 | cp1252
      outages:                        # refuse | ae | drop | stall, see MllpEngineOutage
        - {mode: ae, start: 30s, duration: 10s, every: 5m}
    destinations:
      labka:
        kind: mllp                    # http (the default) | mllp | sql
        target: 127.0.0.1:2576        # mllp: where to forward (the daemon's MLLP listener)
        encoding: latin-1             # mllp: how it encodes what it forwards
        delay: {lognormal: {median: 400ms, sigma: 0.6}}
        loss: 0.02                    # share never delivered
        duplicates: 0.01              # share delivered twice
        reorder: 0.05                 # share held back `reorder_delay` more, so later ones overtake
        reorder_delay: 1s
        corrupt: 0.01                 # share whose non-ASCII text arrives as mojibake
        outages: [{mode: drop, start: 2m, duration: 10s, every: 10m}]
      epm3:
        kind: sql
        url: sqlite+aiosqlite:///epm3.db   # any SQLAlchemy async URL
        table: epm3_inbox                  # created if absent: id, probe_id, received_at, message
      web:
        listen: 127.0.0.1:18081       # http: GET /received?probe_id=..., GET /events?since=...
        outages: [{mode: refuse, start: 2m, duration: 10s, every: 10m}]

Both engines forward every message to every destination. Every problem is reported as a
`ValueError` whose message names the file and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Discriminator,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probe.sim.delay import (
    DELAY_KINDS,
    Delay,
    FixedDelay,
    LognormalDelay,
    LognormalParams,
    UniformDelay,
)
from probe.sim.outage import (
    DestinationOutage,
    EngineOutage,
    ForwardOutage,
    MllpEngineOutage,
    Outage,
)
from probe.sim.values import Duration, Encoding, FrozenModel, Ratio

__all__ = [
    "Delay",
    "DestinationConfig",
    "DestinationOutage",
    "Duration",
    "Encoding",
    "EngineConfig",
    "EngineOutage",
    "FixedDelay",
    "ForwardOutage",
    "Forwarding",
    "HttpDestinationConfig",
    "LognormalDelay",
    "LognormalParams",
    "MllpDestinationConfig",
    "MllpEngineConfig",
    "MllpEngineOutage",
    "Outage",
    "Ratio",
    "SimConfig",
    "SqlDestinationConfig",
    "UniformDelay",
    "load_sim_config",
    "parse_sim_config",
]

KINDS = ("http", "mllp", "sql")
RESERVED = ("", "engine", "mllp_engine")

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _parse_address(value: object, *, listen: bool) -> str:
    what = "listen address" if listen else "target address"
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host.strip("[]") or not port.isdigit():
        raise ValueError(f"invalid {what} {value!r}: expected host:port")
    if int(port) > 65535:
        raise ValueError(f"invalid {what} {value!r}: port above 65535")
    if not listen and int(port) == 0:
        raise ValueError(f"invalid {what} {value!r}: port 0 cannot be connected to")
    return value


Listen = Annotated[str, BeforeValidator(lambda v: _parse_address(v, listen=True))]
"""`host:port` to listen on; port 0 picks a free one. IPv6 hosts go in brackets."""

Target = Annotated[str, BeforeValidator(lambda v: _parse_address(v, listen=False))]
"""`host:port` to connect to. IPv6 hosts go in brackets."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _Site(FrozenModel):
    listen: Listen = "127.0.0.1:0"

    @property
    def host(self) -> str:
        """The host part of `listen`, without IPv6 brackets."""
        return _split(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of `listen`; 0 means any free port."""
        return _split(self.listen)[1]


class EngineConfig(_Site):
    """The HTTP engine that takes in what the source system GS posts."""

    outages: list[EngineOutage] = []


class MllpEngineConfig(_Site):
    """The HL7 v2 engine that takes in what GS sends over MLLP, and ACKs it."""

    encoding: Encoding = "utf-8"  # how the bytes GS sends are decoded, and ACKs encoded
    outages: list[MllpEngineOutage] = []


class Forwarding(FrozenModel):
    """What happens to a message on its way to a destination, whatever its kind.

    Every ratio is drawn for every message, even when it is 0, so changing one leaves the
    others' outcomes where they were.
    """

    delay: Delay = FixedDelay(fixed=0.0)  # from engine receipt to delivery
    loss: Ratio = 0.0  # share never delivered
    duplicates: Ratio = 0.0  # share delivered twice
    reorder: Ratio = 0.0  # share held back by an extra `reorder_delay`
    reorder_delay: Duration = 1.0
    corrupt: Ratio = 0.0  # share whose text is mangled to mojibake (non-ASCII text only)


class HttpDestinationConfig(Forwarding, _Site):
    """A destination that shows what arrived on `GET /received` and `GET /events`."""

    kind: Literal["http"] = "http"
    outages: list[DestinationOutage] = []


class MllpDestinationConfig(Forwarding):
    """A destination the simulator forwards HL7 v2 to over MLLP, e.g. the daemon's listener."""

    kind: Literal["mllp"]
    target: Target
    encoding: Encoding = "utf-8"  # how forwarded text is encoded; unmappable characters -> ?
    outages: list[ForwardOutage] = []

    @property
    def host(self) -> str:
        """The host part of `target`, without IPv6 brackets."""
        return _split(self.target)[0]

    @property
    def port(self) -> int:
        """The port part of `target`."""
        return _split(self.target)[1]


class SqlDestinationConfig(Forwarding):
    """A destination the simulator inserts rows into, one per delivered copy.

    The table is created if absent, with columns `id` (autoincrement), `probe_id`
    varchar(20), `received_at` timestamptz (UTC, when inserted) and `message` text.
    """

    kind: Literal["sql"]
    url: str  # any SQLAlchemy async URL, e.g. sqlite+aiosqlite:///epm3.db
    table: str = "inbox"
    outages: list[ForwardOutage] = []

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        try:
            make_url(url)
        except ArgumentError:
            raise ValueError("not a SQLAlchemy URL, e.g. sqlite+aiosqlite:///epm3.db") from None
        return url

    @field_validator("table")
    @classmethod
    def _table(cls, table: str) -> str:
        if not _TABLE.match(table):
            raise ValueError("a table name is letters, digits and _, not starting with a digit")
        return table


def _destination_kind(value: Any) -> str | None:
    """`kind` of a destination, http when left out; None lets pydantic report it."""
    if isinstance(value, dict):
        kind = value.get("kind", "http")
        return kind if kind in KINDS else None
    kind = getattr(value, "kind", None)
    return kind if kind in KINDS else None


DestinationConfig = Annotated[
    Annotated[HttpDestinationConfig, Tag("http")]
    | Annotated[MllpDestinationConfig, Tag("mllp")]
    | Annotated[SqlDestinationConfig, Tag("sql")],
    Discriminator(
        _destination_kind,
        custom_error_type="destination_kind",
        custom_error_message="kind must be one of http, mllp, sql",
    ),
]
"""A destination of any kind, told apart by `kind`."""


class SimConfig(FrozenModel):
    """The whole simulated landscape. Same seed and same message order give the same run."""

    seed: int = 0
    truth: Path | None = None
    engine: EngineConfig = EngineConfig()
    mllp_engine: MllpEngineConfig | None = None
    destinations: dict[str, DestinationConfig] = {}

    @model_validator(mode="after")
    def _distinct(self) -> SimConfig:
        # Raised from here pydantic has no key to point at, so the messages carry their own.
        for name in self.destinations:
            if name in RESERVED:
                raise ValueError(f"destinations: the name {name!r} is reserved or empty")
        sites: list[tuple[str, str, int]] = [("engine", "engine.listen", self.engine.port)]
        if self.mllp_engine is not None:
            sites.append(("mllp_engine", "mllp_engine.listen", self.mllp_engine.port))
        for name, destination in self.destinations.items():
            if isinstance(destination, HttpDestinationConfig):
                sites.append((name, f"destinations.{name}.listen", destination.port))
        seen: dict[int, str] = {}
        for name, where, port in sites:
            other = seen.setdefault(port, name)
            if port and other != name:
                raise ValueError(f"{where}: port {port} is already used by {other}")
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


def _is_tag(loc: tuple[Any, ...], index: int) -> bool:
    """Whether `loc[index]` is a tag pydantic put there, not a key the user wrote."""
    part, previous = loc[index], loc[index - 1] if index else None
    if previous == "delay" and part in DELAY_KINDS:
        return True
    # destinations.<name>.<kind>: the kind of a destination union.
    return index == 2 and loc[0] == "destinations" and part in KINDS


def _describe(error: Any) -> str:
    """One line per problem, `where: what`, in words an operator can act on."""
    loc = tuple(error["loc"])
    location = ""
    for index, part in enumerate(loc):
        if not _is_tag(loc, index):
            location += f"[{part}]" if isinstance(part, int) else f".{part}"
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
