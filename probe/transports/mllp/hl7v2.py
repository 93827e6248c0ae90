"""HL7 v2 messages: built-in probe templates, field access, and ACKs, on the `hl7` package.

Fields are named as HL7 does, ``SEG-N`` (``MSH-10``, ``PID-3``, ``ORC-2``), counted as the
standard counts them (MSH-1 is the field separator). A probe message carries its probe id
in MSH-10 and in one more field that survives engines which rewrite MSH-10.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

from probe.errors import ProtocolError

FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d{1,3})$")
ACK_CODES_OK = frozenset({"AA", "CA"})
ACK_CODES_ERROR = frozenset({"AE", "AR", "CE", "CR"})
CHARSETS = {"utf-8": "UNICODE UTF-8", "latin-1": "8859/1", "cp1252": ""}  # MSH-18

_ADT_A08 = (
    "MSH|^~\\&|{sending_application}|{sending_facility}|{receiving_application}|"
    "{receiving_facility}|{timestamp}||ADT^A08^ADT_A01|{control_id}|{processing_id}|"
    "{version}|||AL|NE||{charset}\r"
    "EVN|A08|{timestamp}\r"
    "PID|1||{patient_id}^^^CPR||{patient_name}\r"
    "PV1|1|I\r"
)
_ORM_O01 = (
    "MSH|^~\\&|{sending_application}|{sending_facility}|{receiving_application}|"
    "{receiving_facility}|{timestamp}||ORM^O01^ORM_O01|{control_id}|{processing_id}|"
    "{version}|||AL|NE||{charset}\r"
    "PID|1||{patient_id}^^^CPR||{patient_name}\r"
    "ORC|NW|{control_id}|||||||{timestamp}\r"
    "OBR|1|{control_id}||NPU02319^Hæmoglobin;B|||{timestamp}\r"
)
TEMPLATES = {"adt_a08": _ADT_A08, "orm_o01": _ORM_O01}
# Where the probe id travels besides MSH-10, per template, unless configured.
DEFAULT_ID_FIELD = {"adt_a08": "PID-3", "orm_o01": "ORC-2"}


@dataclass(frozen=True, slots=True)
class Header:
    """MSH values a probe message is sent with. Production routes often reject MSH-11 ``T``."""

    sending_application: str = "PROBE"
    sending_facility: str = "PROBE"
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    version: str = "2.5"


def parse_field_name(name: str) -> tuple[str, int]:
    """``"PID-3"`` -> ``("PID", 3)``; a `ValueError` for anything else."""
    match = FIELD.match(name)
    if not match:
        raise ValueError(f"invalid HL7 field {name!r}: use SEG-N, e.g. MSH-10 or PID-3")
    return match.group(1), int(match.group(2))


def build(
    template: str,
    *,
    probe_id: str,
    id_field: str,
    header: Header,
    patient_id: str,
    patient_name: str,
    encoding: str,
    sent_at: datetime,
) -> str:
    """The message text (segments end in ``\\r``) with the probe id in MSH-10 and ``id_field``.

    In PID-3 the id is added as a repetition (``...~PR..^^^PROBE``), so the test patient's
    own identifier stays; in any other field it replaces the value.
    """
    values = {
        "sending_application": header.sending_application,
        "sending_facility": header.sending_facility,
        "receiving_application": header.receiving_application,
        "receiving_facility": header.receiving_facility,
        "processing_id": header.processing_id,
        "version": header.version,
        "charset": CHARSETS.get(encoding, ""),
        "timestamp": sent_at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000"),
        "control_id": probe_id,
        "patient_id": patient_id,
        "patient_name": patient_name,
    }
    text = template.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    message = hl7.parse(text)
    segment_id, number = parse_field_name(id_field)
    if (segment_id, number) != ("MSH", 10):
        _put_id(message, segment_id, number, probe_id)
    return _text(message)


def _put_id(message: hl7.Message, segment_id: str, number: int, probe_id: str) -> None:
    try:
        segment = message.segment(segment_id)
    except KeyError:
        # The template has no such segment: carry the id in a note at the end.
        segment = message.create_segment([message.create_field([segment_id])])
        message.append(segment)
    if (segment_id, number) == ("PID", 3) and str(field_text(message, "PID-3")):
        current = field_text(message, "PID-3")
        segment.assign_field(f"{current}~{probe_id}^^^PROBE", number)
        return
    segment.assign_field(probe_id, number)


def parse(text: str) -> hl7.Message:
    """Parse a message; a `ProtocolError` if it is not HL7 v2 (no MSH first)."""
    text = text.strip("\r\n")
    if not text.startswith("MSH") or len(text) < 8:
        raise ProtocolError("not an HL7 v2 message: it does not start with MSH")
    try:
        return hl7.parse(text)
    except Exception as exc:  # the hl7 package raises several unrelated types
        raise ProtocolError(f"unparsable HL7 message: {exc}") from None


def field_text(message: hl7.Message, name: str) -> str:
    """The whole field (all repetitions and components) as text; ``""`` if absent."""
    segment_id, number = parse_field_name(name)
    try:
        segment = message.segment(segment_id)
        return str(segment(number))
    except (KeyError, IndexError):
        return ""


def message_type(message: hl7.Message) -> str:
    """MSH-9.1, e.g. ``ADT`` or ``ACK``."""
    return field_text(message, "MSH-9").split("^", 1)[0]


def ack(message: hl7.Message, code: str = "AA", text: str = "") -> str:
    """An ACK for ``message`` with MSA-1 ``code`` and, for errors, MSA-3 ``text``.

    A `ProtocolError` if the message's MSH is too broken to answer.
    """
    try:
        reply = message.create_ack(
            ack_code=code, message_id=f"ACK{field_text(message, 'MSH-10')}"[:20]
        )
    except Exception as exc:  # an MSH too short or too odd for the hl7 package
        raise ProtocolError(f"cannot acknowledge the message: {type(exc).__name__}") from None
    if text:
        reply.segment("MSA").assign_field(text[:80], 3)
    return _text(reply)


def _text(message: hl7.Message) -> str:
    """Segments each ended by ``\\r``, the way MLLP peers expect."""
    return str(message).rstrip("\r") + "\r"


def ack_for_garbage(control_id: str, text: str) -> str:
    """An AE ACK for bytes that did not parse as HL7; ``control_id`` may be empty."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    return f"MSH|^~\\&|PROBE|PROBE|||{stamp}||ACK|ACK|P|2.5\rMSA|AE|{control_id}|{text[:80]}\r"


def raw_control_id(text: str) -> str:
    """MSH-10 found by splitting, for messages the parser refused."""
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    parts = text.split("\r", 1)[0].split(text[3])
    return parts[9] if len(parts) > 9 else ""


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an ACK says: MSA-1, MSA-2 and an error text from MSA-3 or ERR."""

    code: str
    control_id: str
    text: str


def read_ack(text: str) -> AckResult:
    """Read MSA-1, MSA-2 and the error text; a `ProtocolError` if there is no MSA."""
    message = parse(text)
    try:
        message.segment("MSA")
    except KeyError:
        raise ProtocolError("reply has no MSA segment") from None
    error = field_text(message, "MSA-3")
    if not error:
        error = _err_text(message)
    return AckResult(field_text(message, "MSA-1"), field_text(message, "MSA-2"), error)


def _err_text(message: hl7.Message) -> str:
    try:
        err = message.segment("ERR")
    except KeyError:
        return ""
    # ERR-8 user message (v2.5+), else ERR-3 error code, else ERR-1 (v2.3).
    for number in (8, 3, 1):
        try:
            value = str(err(number))
        except IndexError:
            continue
        if value:
            return value
    return ""
