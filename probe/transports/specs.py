"""The ``source:`` and ``destinations:`` blocks, one model per transport ``type``.

Every model rejects unknown keys. Template variables (``${probe_id}`` ...) stay in the
text here and are filled in for each probe by the transport.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from jsonpath_ng.ext.parser import parse as parse_jsonpath
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from probe.durations import Duration, Interval
from probe.transports.mllp.hl7v2 import DEFAULT_ID_FIELD, TEMPLATES, parse_field_name

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
LISTEN_PATTERN = re.compile(r"(\[[0-9a-fA-F:]+\]|[^:\s\[\]]+):\d{1,5}")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLO(Model):
    """``slo: {latency: 30s, objective: 0.995}``. Either key may be left to an outer layer."""

    latency: Duration | None = None
    objective: float | None = Field(default=None, gt=0, lt=1)


class TLS(Model):
    """``tls: {verify: true, ca_file: /etc/ssl/hospital-ca.pem}``. Verification is on by default."""

    verify: bool = True
    ca_file: str | None = None

    @field_validator("ca_file")
    @classmethod
    def _exists(cls, ca_file: str | None) -> str | None:
        if ca_file is not None and not _is_file(ca_file):
            raise ValueError(f"CA file {ca_file!r} not found")
        return ca_file


class HttpSource(Model):
    """One request per probe; ``${probe_id}``, ``${sent_at}`` and ``${flow}`` are filled in."""

    type: Literal["http"]
    method: str = "GET"
    url: str
    headers: dict[str, str] = {}
    body: str | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None  # None: any 2xx
    tls: TLS = TLS()

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        return url

    @field_validator("method")
    @classmethod
    def _method(cls, method: str) -> str:
        return method.upper()

    @property
    def summary(self) -> str:
        """For people: ``http POST http://host:port/path`` (no query: it may carry tokens)."""
        return f"http {self.method} {self.url.split('?', 1)[0]}"


class Match(Model):
    """How to find the probe id in a destination's reply: ``{jsonpath: ...}`` or ``{regex: ...}``.

    A regex may use ``${probe_id}``, which is replaced by the escaped probe id.
    """

    jsonpath: str | None = None
    regex: str | None = None

    @field_validator("jsonpath")
    @classmethod
    def _valid_path(cls, path: str | None) -> str | None:
        return None if path is None else _check_jsonpath(path)

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                re.compile(regex.replace("${probe_id}", "X"))
            except re.error as exc:
                raise ValueError(f"invalid regex {regex!r}: {exc}") from None
        return regex

    @model_validator(mode="after")
    def _exactly_one(self) -> Match:
        if (self.jsonpath is None) == (self.regex is None):
            raise ValueError("give exactly one of jsonpath or regex")
        return self


class HttpDestination(Model):
    """Polls ``url`` every ``poll`` until the probe id shows up (JSONPath or regex match)."""

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["http"]
    url: str
    poll: Interval | None = None
    match: Match = Match(regex="${probe_id}")
    time_field: str | None = None  # JSONPath to the destination's own arrival time
    headers: dict[str, str] = {}
    tls: TLS = TLS()
    slo: SLO = SLO()

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return HttpSource._http_url(url)

    @field_validator("time_field")
    @classmethod
    def _time_field(cls, path: str | None) -> str | None:
        return None if path is None else _check_jsonpath(path)

    @model_validator(mode="after")
    def _time_needs_json(self) -> HttpDestination:
        if self.time_field is not None and self.match.jsonpath is None:
            raise ValueError("time_field needs match: {jsonpath: ...}")
        return self


def _check_jsonpath(path: str) -> str:
    try:
        parse_jsonpath(path)
    except Exception as exc:  # jsonpath-ng raises several unrelated types
        raise ValueError(f"invalid JSONPath {path!r}: {exc}") from None
    return path


def check_listen(listen: str) -> str:
    """``HOST:PORT``; ``[::1]:2576`` for IPv6."""
    if not LISTEN_PATTERN.fullmatch(listen):
        raise ValueError(f"invalid listen address {listen!r}: use HOST:PORT, e.g. 127.0.0.1:9464")
    if int(listen.rpartition(":")[2]) > 65535:  # 0 is fine: any free port
        raise ValueError(f"invalid listen address {listen!r}: the port must be at most 65535")
    return listen


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in the path
        return False


def _check_file(path: str | None, what: str) -> str | None:
    if path is not None and not _is_file(path):
        raise ValueError(f"{what} {path!r} not found")
    return path


# In a value put into the message these would end its field or segment (or the MLLP frame)
# and shift the fields after it, MSH-10 and its probe id among them.
_HL7_BREAKERS = re.compile(r"[|\r\n\x0b\x1c]")


def _hl7_value(value: str) -> str:
    if _HL7_BREAKERS.search(value):
        raise ValueError("must not contain |, a line break, 0x0B or 0x1C")
    return value


class Patient(Model):
    """The configured test patient. Danish practice: a fictitious CPR (day of month + 60)."""

    id: str = "6504611234"
    name: str = "Testperson^Åse"

    _hl7 = field_validator("id", "name")(_hl7_value)


class Msh(Model):
    """MSH values of the probe message. MSH-11 ``T`` is often rejected by production routes."""

    sending_application: str = "PROBE"
    sending_facility: str = "PROBE"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"  # MSH-11
    version: str = "2.5"  # MSH-12

    _hl7 = field_validator("*")(_hl7_value)


class MllpClientTLS(Model):
    """``tls: {enabled: true}`` for MLLP over TLS; the server's certificate is verified."""

    enabled: bool = False
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate, optional
    key_file: str | None = None

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: str | None) -> str | None:
        return _check_file(path, "file")


class MllpServerTLS(Model):
    """``tls: {enabled: true, cert_file, key_file}`` for a listener that speaks MLLP over TLS."""

    enabled: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None  # when set, clients must present a certificate it signed

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: str | None) -> str | None:
        return _check_file(path, "file")

    @model_validator(mode="after")
    def _needs_cert(self) -> MllpServerTLS:
        if self.enabled and not self.cert_file:
            raise ValueError("tls.enabled needs cert_file (and key_file unless it is in there)")
        return self


Encoding = Literal["utf-8", "latin-1", "cp1252"]


class MllpSource(Model):
    """HL7 v2 over MLLP: one message per probe on a persistent connection, then its ACK."""

    type: Literal["mllp"]
    host: str
    port: int = Field(ge=1, le=65535)
    message: Literal["adt_a08", "orm_o01"] | None = None
    template_file: str | None = None
    id_field: str | None = None  # besides MSH-10; default per template
    encoding: Encoding = "utf-8"
    patient: Patient = Patient()
    msh: Msh = Msh()
    tls: MllpClientTLS = MllpClientTLS()

    @field_validator("template_file")
    @classmethod
    def _template_exists(cls, path: str | None) -> str | None:
        return _check_file(path, "template_file")

    @field_validator("id_field")
    @classmethod
    def _field(cls, name: str | None) -> str | None:
        if name is not None:
            parse_field_name(name)
        return name

    @model_validator(mode="after")
    def _one_template(self) -> MllpSource:
        if self.message is not None and self.template_file is not None:
            raise ValueError("give either message or template_file, not both")
        return self

    @property
    def summary(self) -> str:
        """For people: ``mllp adt_a08 host:port``."""
        what = self.template_file or self.message or "adt_a08"
        return f"mllp {what} {self.host}:{self.port}{' (tls)' if self.tls.enabled else ''}"

    @property
    def template(self) -> str:
        """The template text: built-in, or read from ``template_file``."""
        if self.template_file is not None:
            return Path(self.template_file).read_text(encoding="utf-8")
        return TEMPLATES[self.message or "adt_a08"]

    @property
    def probe_field(self) -> str:
        """The field that carries the probe id besides MSH-10."""
        if self.id_field is not None:
            return self.id_field
        return DEFAULT_ID_FIELD.get(self.message or "adt_a08", "MSH-10")


# An MLLP listener's limits, so that no peer can take all descriptors or memory: an engine
# keeps one to a few connections, and a probe message is a few hundred bytes.
MLLP_MAX_CONNECTIONS = 64
MLLP_IDLE_TIMEOUT = 300.0
MLLP_MAX_FRAME = 1024 * 1024


class MllpDestination(Model):
    """A listener the engine forwards to. Every message is ACKed; ACKs are never ACKed.

    ``max_connections: 64, idle_timeout: 5m, max_frame: 1048576`` (the defaults): more
    connections are closed at once, a silent one is closed, a larger frame is refused.
    """

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["mllp"]
    listen: str
    match: str = "MSH-10"  # the field that carries the probe id on arrival
    encoding: Encoding = "utf-8"
    duplicate_window: Duration = 0.5  # after the first copy, how long to count duplicates
    compare: list[str] | None = None  # fields checked for corruption; default: what was sent
    tls: MllpServerTLS = MllpServerTLS()
    slo: SLO = SLO()
    max_connections: int = Field(default=MLLP_MAX_CONNECTIONS, ge=1, le=100_000)
    idle_timeout: Duration = MLLP_IDLE_TIMEOUT  # a connection silent this long is closed
    max_frame: int = Field(default=MLLP_MAX_FRAME, ge=1024, le=256 * 1024 * 1024)  # bytes

    @field_validator("listen")
    @classmethod
    def _listen(cls, listen: str) -> str:
        return check_listen(listen)

    @field_validator("match")
    @classmethod
    def _match(cls, name: str) -> str:
        parse_field_name(name)
        return name

    @field_validator("compare")
    @classmethod
    def _compare(cls, names: list[str] | None) -> list[str] | None:
        for name in names or []:
            parse_field_name(name)
        return names


def _check_sql_url(url: str) -> str:
    try:
        make_url(url)
    except ArgumentError:
        message = "invalid SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db)"
        raise ValueError(message) from None
    return url


def _check_probe_param(sql: str) -> str:
    if ":probe_id" not in sql:
        raise ValueError("the SQL must use the bound parameter :probe_id")
    return sql


class SqlSource(Model):
    """Runs ``statement`` (usually an INSERT) with bound ``:probe_id``, ``:sent_at``, ``:flow``."""

    type: Literal["sql"]
    url: str
    statement: str

    @property
    def summary(self) -> str:
        """For people: ``sql postgresql+psycopg://host/db`` (no user, no password)."""
        url = make_url(self.url)
        return f"sql {url.drivername}://{url.host or ''}/{url.database or ''}"

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_sql_url(url)

    @field_validator("statement")
    @classmethod
    def _statement(cls, sql: str) -> str:
        return _check_probe_param(sql)


class SqlDestination(Model):
    """Polls ``query`` with bound ``:probe_id`` and ``:since``; each row is one arrival."""

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["sql"]
    url: str
    query: str
    poll: Interval | None = None
    time_column: str | None = None  # the destination's own arrival time
    slo: SLO = SLO()

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return _check_sql_url(url)

    @field_validator("query")
    @classmethod
    def _query(cls, sql: str) -> str:
        return _check_probe_param(sql)
