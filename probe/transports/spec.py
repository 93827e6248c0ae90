"""What every transport's config models share, and what `probe.config` builds on.

A transport's ``spec`` module defines a source model and a destination model, each with a
``type: Literal["name"]`` field, on the strict `Model` base:

    class HttpSource(Model):
        type: Literal["http"]
        url: str = Field(description="`http://` or `https://`.")

Every model rejects unknown keys, and every field has a ``description`` (the generated
config reference is made from them).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from probe.durations import Duration

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
LISTEN_PATTERN = re.compile(r"(\[[0-9a-fA-F:]+\]|[^:\s\[\]]+):\d{1,5}")


class Model(BaseModel):
    """The base of every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SLO(Model):
    """``slo: {latency: 30s, objective: 0.995}``. Either key may be left to an outer layer."""

    latency: Duration | None = Field(
        default=None, description="Seen within this is `delivered`; later is `late`."
    )
    objective: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="The target share of good results, exported for burn-rate alerts.",
    )


class TLS(Model):
    """``tls: {verify: true, ca_file: /etc/ssl/hospital-ca.pem}``. Verification is on by default."""

    verify: bool = Field(default=True, description="Verify the server's certificate.")
    ca_file: str | None = Field(
        default=None,
        description="A PEM file of CAs to trust, such as the hospital's internal CA "
        "(default: the system CAs).",
    )

    @field_validator("ca_file")
    @classmethod
    def _exists(cls, ca_file: str | None) -> str | None:
        if ca_file is not None and not is_file(ca_file):
            raise ValueError(f"CA file {ca_file!r} not found")
        return ca_file


def check_listen(listen: str) -> str:
    """``HOST:PORT``; ``[::1]:2576`` for IPv6."""
    if not LISTEN_PATTERN.fullmatch(listen):
        raise ValueError(f"invalid listen address {listen!r}: use HOST:PORT, e.g. 127.0.0.1:9464")
    if int(listen.rpartition(":")[2]) > 65535:  # 0 is fine: any free port
        raise ValueError(f"invalid listen address {listen!r}: the port must be at most 65535")
    return listen


def split_listen(listen: str) -> tuple[str, int]:
    """``("::1", 2576)`` for ``[::1]:2576``: the host without brackets, and the port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_file(path: str) -> bool:
    """Whether ``path`` names a file; False for a path the file system cannot even hold."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL in the path
        return False


def check_file(path: str | None, what: str) -> str | None:
    """``path`` if it is None or a file, else ``ValueError("<what> '<path>' not found")``."""
    if path is not None and not is_file(path):
        raise ValueError(f"{what} {path!r} not found")
    return path
