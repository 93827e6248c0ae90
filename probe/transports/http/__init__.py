"""HTTP: a request per probe (`HttpProbeSource`), and a URL polled for it (`HttpPollObserver`).

`TRANSPORT` is this package's entry in `probe.transports.registry`.
"""

from probe.transports.base import Transport
from probe.transports.http.spec import HttpDestination, HttpSource
from probe.transports.http.transport import HttpPollObserver, HttpProbeSource

TRANSPORT = Transport(
    type="http",
    source_spec=HttpSource,
    destination_spec=HttpDestination,
    source=HttpProbeSource,
    observer=HttpPollObserver.for_destination,
)

__all__ = ["TRANSPORT"]
