"""Transports: one package per protocol, behind two small protocols and a registry by ``type``.

A transport does one protocol and raises `probe.errors.TransportError` subclasses. It never
times, logs, counts or stores: the runner does that, once, for every transport. Each one
is a `Transport` value (its config models and factories) that `probe.transports.registry`
lists; other packages add theirs through the entry-point group ``probe.transports``.
"""

from probe.transports.base import (
    Observer,
    RecordingObserver,
    Resources,
    Source,
    Transport,
)
from probe.transports.registry import make_observer, make_source

__all__ = [
    "Observer",
    "RecordingObserver",
    "Resources",
    "Source",
    "Transport",
    "make_observer",
    "make_source",
]
