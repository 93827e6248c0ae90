"""What travels from an engine to the destinations: the message, its probe id, its text.

Both engines turn what GS sent into a `Message`; each destination shows, forwards or
stores it in its own way. Corruption (`mangle`) and the HL7 form of an HTTP post
(`as_hl7`) live here because every kind of destination may need them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from probe.sim.truth import EngineName
from probe.transports.mllp import hl7v2

PROBE_ID = re.compile(rb"PR[0-9A-F]{18}")
"""A probe id as it appears inside any payload, used when the body is not our JSON."""

_PROBE_ID_TEXT = re.compile(PROBE_ID.pattern.decode("ascii"))

# Characters that would split an id put into an HL7 field into other fields or components.
_HL7_DELIMITERS = str.maketrans(dict.fromkeys("|^~\\&\r\n", "_"))


def _cp1252_table() -> str:
    """Byte -> character as Windows-1252 shows it, latin-1 for its five undefined bytes."""
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            chars.append(chr(byte))
    return "".join(chars)


# How UTF-8 bytes look to a reader that takes them for a single-byte charset.
_MOJIBAKE = {"cp1252": _cp1252_table(), "latin-1": "".join(map(chr, range(256)))}


@dataclass(frozen=True, slots=True)
class Message:
    """One message an engine took in: `received_at` is epoch seconds at its arrival.

    `text` is what GS sent, decoded; `hl7` says whether it is an HL7 v2 message (the MLLP
    engine's always are; an HTTP post is when its body starts with ``MSH``).
    """

    probe_id: str
    received_at: float
    text: str
    hl7: bool
    engine: EngineName


def find_probe_id(body: bytes) -> str | None:
    """The `probe_id` field of a JSON object body, else the first id-shaped text, else None."""
    try:
        data = json.loads(body)
    except ValueError:  # also covers bytes that are not UTF-8
        data = None
    if isinstance(data, dict) and isinstance(data.get("probe_id"), str) and data["probe_id"]:
        return str(data["probe_id"])
    match = PROBE_ID.search(body)
    return match.group().decode("ascii") if match else None


def find_probe_id_text(text: str) -> str | None:
    """The first id-shaped token in decoded text, or None."""
    match = _PROBE_ID_TEXT.search(text)
    return match.group() if match else None


def mangle(text: str, *, misread_as: Literal["cp1252", "latin-1"] = "cp1252") -> str:
    """Mojibake: the text's UTF-8 bytes read as `misread_as`, so ``Åse`` becomes ``Ã…se``.

    ASCII text comes back unchanged, as it does through a real charset mix-up. With
    ``latin-1`` every character of the result can itself be encoded as latin-1.
    """
    if text.isascii():
        return text
    table = _MOJIBAKE[misread_as]
    return "".join(table[byte] for byte in text.encode("utf-8"))


def as_hl7(message: Message, *, encoding: str = "utf-8") -> str:
    """The message as HL7 v2 text: as sent if it is HL7, else a minimal ADT^A08.

    The ADT^A08 carries the probe id in MSH-10 (HL7 delimiters in it become ``_``, and it
    is cut to 20 characters), a fixed test patient, the arrival time, and in MSH-18 the
    character set named by `encoding`, the one it will travel in.
    """
    if message.hl7:
        return message.text
    control_id = message.probe_id.translate(_HL7_DELIMITERS)[:20]
    return hl7v2.build(
        hl7v2.TEMPLATES["adt_a08"],
        probe_id=control_id,
        id_field="MSH-10",
        header=hl7v2.Header(sending_application="SIM", sending_facility="ENGINE"),
        patient_id="6101010000",
        patient_name="Testperson^Sim",
        encoding=encoding,
        sent_at=datetime.fromtimestamp(message.received_at, tz=UTC),
    )
