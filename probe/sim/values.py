"""The building blocks of the simulator's config models: a strict base, durations, ratios."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from probe.durations import DurationOrZero


class FrozenModel(BaseModel):
    """The base of every simulator config model: unknown keys are refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Offsets and delays may be zero; a window with no duration is refused by its model.
Duration = DurationOrZero
"""A non-negative number of seconds, written as `300ms`, `30s`, `5m`, `1h` or a number."""

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
"""A share of messages, 0 to 1."""

Encoding = Literal["utf-8", "latin-1", "cp1252"]
"""A character set HL7 text travels in; Danish systems often use latin-1 for æøå."""
