"""Transports: one module per protocol, behind two small protocols and a registry by ``type``.

A transport does one protocol and raises `probe.errors.TransportError` subclasses. It never
times, logs, counts or stores: the runner does that, once, for every transport.
"""

from probe.transports.base import (
    Observer,
    RecordingObserver,
    Resources,
    Source,
    make_observer,
    make_source,
)

__all__ = ["Observer", "RecordingObserver", "Resources", "Source", "make_observer", "make_source"]
