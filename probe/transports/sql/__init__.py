"""SQL: a statement run per probe (`SqlProbeSource`), and a query polled for it
(`SqlPollObserver`), on any SQLAlchemy async URL.

`TRANSPORT` is this package's entry in `probe.transports.registry`.
"""

from probe.transports.base import Transport
from probe.transports.sql.spec import SqlDestination, SqlSource
from probe.transports.sql.transport import SqlPollObserver, SqlProbeSource

TRANSPORT = Transport(
    type="sql",
    source_spec=SqlSource,
    destination_spec=SqlDestination,
    source=SqlProbeSource,
    observer=SqlPollObserver.for_destination,
)

__all__ = ["TRANSPORT"]
