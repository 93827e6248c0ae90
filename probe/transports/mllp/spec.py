"""The ``type: mllp`` config models: HL7 v2 messages sent to an engine, and a listener.

MllpSource(type="mllp", host="engine.example", port=2575, message="adt_a08")
MllpDestination(name="labka", type="mllp", listen="0.0.0.0:2576", match="PID-3")
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from probe.durations import Duration
from probe.transports.mllp.hl7v2 import DEFAULT_ID_FIELD, TEMPLATES, parse_field_name
from probe.transports.spec import NAME_PATTERN, SLO, Model, check_file, check_listen

# In a value put into the message these would end its field or segment (or the MLLP frame)
# and shift the fields after it, MSH-10 and its probe id among them.
_HL7_BREAKERS = re.compile(r"[|\r\n\x0b\x1c]")


def _hl7_value(value: str) -> str:
    if _HL7_BREAKERS.search(value):
        raise ValueError("must not contain |, a line break, 0x0B or 0x1C")
    return value


class Patient(Model):
    """The configured test patient. Danish practice: a fictitious CPR (day of month + 60)."""

    id: str = Field(
        default="6504611234",
        description="The test patient's CPR. Use a fictitious one (day of month + 60).",
    )
    name: str = Field(
        default="Testperson^Åse",
        description="PID-5. It travels with æøå, so charset damage on the way shows up.",
    )

    _hl7 = field_validator("id", "name")(_hl7_value)


class Msh(Model):
    """MSH values of the probe message. MSH-11 ``T`` is often rejected by production routes."""

    sending_application: str = Field(default="PROBE", description="MSH-3.")
    sending_facility: str = Field(default="PROBE", description="MSH-4.")
    receiving_application: str = Field(default="", description="MSH-5.")
    receiving_facility: str = Field(default="", description="MSH-6.")
    processing_id: str = Field(
        default="P", description="MSH-11. Production routes often reject `T`."
    )
    version: str = Field(default="2.5", description="MSH-12.")

    _hl7 = field_validator("*")(_hl7_value)


class MllpClientTLS(Model):
    """``tls: {enabled: true}`` for MLLP over TLS; the server's certificate is verified."""

    enabled: bool = Field(default=False, description="MLLP over TLS.")
    verify: bool = Field(default=True, description="Verify the engine's certificate.")
    ca_file: str | None = Field(
        default=None, description="A PEM file of CAs to trust (default: the system CAs)."
    )
    cert_file: str | None = Field(  # client certificate, optional
        default=None, description="An optional client certificate."
    )
    key_file: str | None = Field(default=None, description="The key of the client certificate.")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: str | None) -> str | None:
        return check_file(path, "file")


class MllpServerTLS(Model):
    """``tls: {enabled: true, cert_file, key_file}`` for a listener that speaks MLLP over TLS."""

    enabled: bool = Field(default=False, description="A TLS listener.")
    cert_file: str | None = Field(
        default=None, description="The listener's certificate (needed with `enabled`)."
    )
    key_file: str | None = Field(default=None, description="Its key, unless it is in `cert_file`.")
    ca_file: str | None = Field(  # when set, clients must present a certificate it signed
        default=None, description="With TLS: require client certificates signed by this CA."
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _exists(cls, path: str | None) -> str | None:
        return check_file(path, "file")

    @model_validator(mode="after")
    def _needs_cert(self) -> MllpServerTLS:
        if self.enabled and not self.cert_file:
            raise ValueError("tls.enabled needs cert_file (and key_file unless it is in there)")
        return self


Encoding = Literal["utf-8", "latin-1", "cp1252"]


class MllpSource(Model):
    """HL7 v2 over MLLP: one message per probe on a persistent connection, then its ACK."""

    type: Literal["mllp"] = Field(description="`mllp`.")
    host: str = Field(description="The engine's MLLP listener: its host.")
    port: int = Field(ge=1, le=65535, description="The engine's MLLP listener: its port.")
    message: Literal["adt_a08", "orm_o01"] | None = Field(
        default=None,
        description="The built-in template: `adt_a08` updates a test patient, `orm_o01` "
        "orders a test (default: `adt_a08`).",
    )
    template_file: str | None = Field(
        default=None,
        description="Your own message instead, with the placeholders `{control_id}` (the "
        "probe id), `{timestamp}`, `{patient_id}`, `{patient_name}`, "
        "`{sending_application}`, `{sending_facility}`, `{receiving_application}`, "
        "`{receiving_facility}`, `{processing_id}`, `{version}` and `{charset}`. Give "
        "`message` or `template_file`, not both.",
    )
    id_field: str | None = Field(
        default=None,  # besides MSH-10; default per template
        description="A second field for the probe id, besides MSH-10, because engines often "
        "rewrite MSH-10 (default: `PID-3` for `adt_a08`, `ORC-2` for `orm_o01`). In PID-3 "
        "the id is added as a repetition (`...~PR...^^^PROBE`), so the test patient keeps "
        "its identifier. In any other field, such as `OBR-2`, `ORC-2` or `NTE-3`, it "
        "replaces the value. A segment the template lacks is appended.",
    )
    encoding: Encoding = Field(
        default="utf-8",
        description="`utf-8`, `latin-1` or `cp1252`. Danish systems often send æøå as "
        "latin-1. MSH-18 is set to match.",
    )
    patient: Patient = Field(default=Patient(), description="`{id, name}`: the test patient.")
    msh: Msh = Field(default=Msh(), description="MSH values of the probe message.")
    tls: MllpClientTLS = Field(
        default=MllpClientTLS(),
        description="`{enabled, verify, ca_file, cert_file, key_file}`: MLLP over TLS.",
    )

    @field_validator("template_file")
    @classmethod
    def _template_exists(cls, path: str | None) -> str | None:
        return check_file(path, "template_file")

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

    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique within the flow. It is the `destination` label.",
    )
    type: Literal["mllp"] = Field(description="`mllp`.")
    listen: str = Field(
        description="`HOST:PORT` to listen on. The engine forwards here. Several "
        "destinations or flows may share one address."
    )
    match: str = Field(
        default="MSH-10",  # the field that carries the probe id on arrival
        description="The field that carries the probe id on arrival, such as `PID-3` when "
        "the engine rewrites MSH-10.",
    )
    encoding: Encoding = Field(default="utf-8", description="How arriving bytes are decoded.")
    duplicate_window: Duration = Field(
        default=0.5,  # after the first copy, how long to count duplicates
        description="After the first copy arrives, how long to keep counting duplicates. It "
        "delays the result, not the latency.",
    )
    compare: list[str] | None = Field(
        default=None,  # fields checked for corruption; default: what was sent
        description="Fields that must arrive unchanged (default: what the source sent, "
        "`PID-5`). A changed one is stored in `results.mismatch` and counted in "
        "`probe_content_mismatches_total`.",
    )
    tls: MllpServerTLS = Field(
        default=MllpServerTLS(),
        description="`{enabled, cert_file, key_file, ca_file}`: a TLS listener (off).",
    )
    slo: SLO = Field(default=SLO(), description="`{latency, objective}`, overriding the flow's.")
    max_connections: int = Field(
        default=MLLP_MAX_CONNECTIONS,
        ge=1,
        le=100_000,
        description="Connections the listener holds at once (TLS handshakes included). One "
        "more is reset at once and counted; the log says so once, then sums up once a "
        "minute (`mllp_connection_refused` with `count`).",
    )
    idle_timeout: Duration = Field(
        default=MLLP_IDLE_TIMEOUT,  # a connection silent this long is closed
        description="A connection that sends nothing (or reads none of its ACKs) this long "
        "is closed (`mllp_idle_closed`). Keep it above the flow's `interval` if the engine "
        "holds one connection open between probes, or expect it to reconnect.",
    )
    max_frame: int = Field(
        default=MLLP_MAX_FRAME,
        ge=1024,
        le=256 * 1024 * 1024,
        description="The largest message, in bytes (1024 to 268435456). A larger one is "
        "answered with AE (naming its MSH-10) and its connection closed; nothing beyond it "
        "is buffered.",
    )

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
