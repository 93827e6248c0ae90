"""HL7 v2 read by splitting, for the usual message with the standard separators.

    raw = RawMessage.of(text)           # None: not plain, use `hl7v2.parse`
    if raw is not None and not raw.is_reply():
        control_id = raw.field("MSH-10")

Parsing every arrival and ACK with the hl7 package was about a quarter of the daemon's CPU
at 200 probes/s; this gives the same answers for the messages it accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from probe.transports.mllp import hl7v2

# The standard separators: a message that starts this way is read by `RawMessage`.
_PLAIN_MSH = "MSH|^~\\&|"
# An MSH-9 of components only (no repetition, subcomponent or escape), at least two.
_PLAIN_TYPE = re.compile(r"[^~&\\^]*(\^[^~&\\^]*)+")


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message with the standard separators, read by splitting the text the way
    `hl7.parse` splits it, without building its containers.

    `field` gives what `hl7v2.field_text` gives for the parsed message. `of` returns None
    for any other text, which then goes through `hl7v2.parse` as before.
    """

    header: str  # the MSH segment
    segments: tuple[list[str], ...]  # each segment split into its fields

    @classmethod
    def of(cls, text: str) -> RawMessage | None:
        text = text.strip("\r\n")  # as `hl7v2.parse`, then `hl7.parse` strips whitespace
        if not text.startswith(_PLAIN_MSH):
            return None
        lines = text.strip().split("\r")
        return cls(lines[0], tuple(line.split("|") for line in lines))

    def field(self, name: str) -> str:
        """The whole field (repetitions and components) as text; ``""`` if absent."""
        segment_id, number = _field_name(name)
        for parts in self.segments:
            if parts[0] == segment_id and len(parts) > 1:
                if segment_id == "MSH":  # MSH-1 is the separator itself
                    if number == 1:
                        return "|"
                    number -= 1
                return parts[number] if number < len(parts) else ""
        return ""

    def ack(self) -> str | None:
        """`hl7v2.ack` (AA) for this message, as text; None if its MSH is not plain enough
        (`hl7v2.ack` then decides, and may refuse it)."""
        msh = self.segments[0]
        # MSH-12 must be there, and MSH-9 plain components: the hl7 package fails otherwise.
        if len(msh) < 12 or not _PLAIN_TYPE.fullmatch(msh[8]):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        kind = f"ACK^{msh[8].split('^')[1]}^ACK"
        header = [msh[0], msh[1], msh[4], msh[5], msh[2], msh[3], stamp, "", kind]
        header += [f"ACK{msh[9]}"[:20], msh[10], msh[11]]
        return "|".join(header) + f"\rMSA|AA|{msh[9]}\r"

    def has(self, segment_id: str) -> bool:
        # A segment with no field separator at all is not found by `hl7` either.
        return any(parts[0] == segment_id and len(parts) > 1 for parts in self.segments)

    def is_reply(self) -> bool:
        """An ACK, or any other reply (it has an MSA): never to be acknowledged."""
        return self.field("MSH-9").split("^", 1)[0] == "ACK" or self.has("MSA")


def is_reply(message: Any) -> bool:
    """`RawMessage.is_reply` for a message `hl7v2.parse` parsed."""
    if hl7v2.message_type(message) == "ACK":
        return True
    try:
        message.segment("MSA")
    except KeyError:
        return False
    return True


@cache
def _field_name(name: str) -> tuple[str, int]:
    return hl7v2.parse_field_name(name)
