"""HL7 v2 over MLLP: framing, messages, the source and observer, and the shared listener.

`TRANSPORT` is this package's entry in `probe.transports.registry`.
"""

from probe.transports.base import Transport
from probe.transports.mllp.spec import MllpDestination, MllpSource
from probe.transports.mllp.transport import MllpObserver, MllpProbeSource

TRANSPORT = Transport(
    type="mllp",
    source_spec=MllpSource,
    destination_spec=MllpDestination,
    source=MllpProbeSource,
    observer=MllpObserver.for_destination,
)

__all__ = ["TRANSPORT"]
