"""Structured logs: JSON when stdout is not a terminal, with secrets and patients masked.

Each probe runs inside ``bound_contextvars(flow=..., probe_id=...)``, so every line a probe
causes carries both.

`Redactor.redact` is also what the runner applies to every excerpt it stores: it replaces
each known secret, every Danish CPR number (``DDMMYY-XXXX`` or ``DDMMYYXXXX``) and, in
HL7 text, the patient identifier and name fields of PID (PID-2, -3, -4, -5, -19), keeping
only probe ids, so an engine's error text that quotes a patient never reaches a log or a row.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "***"
MASKED = "######-####"  # where a CPR number was

# DDMMYY-XXXX or DDMMYYXXXX; day 01-31, or 61-91 as in the fictitious test CPRs. Not inside
# a longer run of letters or digits, so timestamps, ports and probe ids are left alone.
_CPR = re.compile(
    r"(?<![0-9A-Za-z])(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01])(?:0[1-9]|1[0-2])\d{2}"
    r"-?\d{4}(?![0-9A-Za-z])"
)
# A PID segment up to its end (a line break, or one written as \\r in a repr); the character
# after "PID" is the field separator. Not "-", so field names such as PID-5 stay readable.
_PID = re.compile(r"(?:(?<![0-9A-Za-z])|(?<=\\[rn]))PID([^\w\s\-.,])(?:[^\r\n\\]|\\(?![rn]))*")
_PID_FIELDS = frozenset({2, 3, 4, 5, 19})  # patient ids, name, SSN
_PROBE_ID = re.compile(r"(?<![0-9A-Za-z])PR[0-9A-F]{18}(?![0-9A-Za-z])")


def mask_patients(text: str) -> str:
    """Mask CPR numbers, and the identifier and name fields of any HL7 PID segment.

    >>> mask_patients("PID|1||0101801234^^^CPR~PR19A2B3C4D5E6F7A8B9^^^PROBE||Jensen^Ib")
    'PID|1||***~PR19A2B3C4D5E6F7A8B9^^^PROBE||***'
    """
    if "PID" in text:
        text = _PID.sub(_mask_pid, text)
    return _CPR.sub(MASKED, text)


def _mask_pid(match: re.Match[str]) -> str:
    separator = match.group(1)
    fields = match.group(0).split(separator)
    for number in _PID_FIELDS & set(range(1, len(fields))):
        if fields[number]:
            # A probe id in PID-3 is ours, not the patient's: it stays, so the row still
            # shows which probe the text is about.
            kept = [r for r in fields[number].split("~") if _PROBE_ID.match(r)]
            fields[number] = "~".join([REDACTED, *kept])
    return separator.join(fields)


class Redactor:
    """A structlog processor that masks secrets and patient identifiers in every string.

    Nested lists, tuples and dicts in an event are masked too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            event[key] = self._value(value)
        return event

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list | tuple):
            return type(value)(self._value(v) for v in value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced and every patient identifier masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return mask_patients(text)


redactor = Redactor()


def configure(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up structlog for the process. ``json=None``: JSON unless the stream is a terminal.

    Logs go to stdout, as containers expect; commands whose stdout is their answer
    (``probe once``) pass ``stream=sys.stderr``.
    """
    stream = sys.stdout if stream is None else stream
    as_json = not stream.isatty() if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
