"""The exception tree. Every error the daemon raises on purpose is one of these.

    ProbeError
    ├── ConfigError            a config file that cannot be used (exit 2)
    ├── StartupError           the daemon cannot set up what it measures with (exit 1)
    ├── TransportError         the source or a destination misbehaved
    │   ├── ConnectError       refused, unreachable, reset before a reply
    │   ├── TransportTimeout   no reply before the deadline
    │   ├── ProtocolError      a reply that breaks the protocol (bad frame, garbage body)
    │   └── CheckFailed        a well-formed reply that says "no" (HTTP 5xx, unexpected status)
    └── StoreError             the SQL store cannot be read or written

Outcomes follow the tree: a `TransportError` raised by a source is `send_error`, one raised
by an observer is `observe_error`. The error's `reason` is the short word stored with the
result and shown in logs, so operators can group failures without parsing messages.
"""

from __future__ import annotations


class ProbeError(Exception):
    """Root of every error raised on purpose by dataflow-probe."""


class StartupError(ProbeError):
    """The daemon cannot start something it measures with, such as a listener's port.

    It refuses to start rather than run and record the destination as failing: the fault
    would be the prober's, not the integration's.
    """


class ConfigError(ProbeError):
    """A config that cannot be used. `problems` holds one line per problem, with location."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class TransportError(ProbeError):
    """A source or destination misbehaved. `reason` is a short, stable word."""

    reason = "transport"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConnectError(TransportError):
    reason = "connect"


class TransportTimeout(TransportError):
    reason = "timeout"


class ProtocolError(TransportError):
    reason = "protocol"


class CheckFailed(TransportError):
    """A well-formed reply that is not the one expected, e.g. HTTP 500 or a wrong status."""

    reason = "unexpected_status"


class StoreError(ProbeError):
    """The SQL store cannot be read or written."""
