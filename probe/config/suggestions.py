"""The key an unknown key was probably meant to be, from the models' own fields.

    >>> did_you_mean(("flows", 0, "intervall"))
    'interval'
    >>> did_you_mean(("flows", 0, "source", "http", "verb")) is None  # nothing close
    True

The path is pydantic's (``loc``), union tags included: ``source.http.url`` is the ``url``
of the ``type: http`` source.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from probe.config.models import Config

_NONE = type(None)
_CUTOFF = 0.6  # difflib's own: "intervall" finds "interval", "verb" finds nothing


def did_you_mean(loc: tuple[str | int, ...], *, root: type[BaseModel] = Config) -> str | None:
    """The known key closest to the unknown one at the end of ``loc``, if one is close."""
    name = loc[-1] if loc else None
    if not isinstance(name, str):
        return None
    close = difflib.get_close_matches(name, known_keys(loc[:-1], root=root), n=1, cutoff=_CUTOFF)
    return close[0] if close else None


def known_keys(loc: tuple[str | int, ...], *, root: type[BaseModel] = Config) -> list[str]:
    """The keys of the model at ``loc``; none if ``loc`` leads to no model."""
    current: Any = root
    steps = list(loc)
    while steps:
        current, consumed = _enter(_unwrap(current), steps[0])
        if current is None:
            return []
        if consumed:
            steps.pop(0)
    current = _unwrap(current)
    return list(current.model_fields) if _is_model(current) else []


def _enter(kind: Any, step: str | int) -> tuple[Any, bool]:
    """The type one step inside ``kind`` (None if none), and whether the step was used."""
    if _is_model(kind):
        field = kind.model_fields.get(step) if isinstance(step, str) else None
        return (None if field is None else field.annotation), True
    origin, args = get_origin(kind), get_args(kind)
    if origin in (list, tuple) and isinstance(step, int) and args:
        return args[0], True
    if origin is dict and len(args) == 2:
        return args[1], True
    if origin in (Union, types.UnionType):
        return _variant(args, step)
    return None, True


def _variant(args: tuple[Any, ...], step: str | int) -> tuple[Any, bool]:
    """The union member that pydantic's tag ``step`` names, or its only model."""
    members = [_unwrap(arg) for arg in args if arg is not _NONE]
    for member in members:
        if step in _tags(member):
            return member, True
    models = [member for member in members if _is_model(member)]
    return (models[0] if len(models) == 1 else None), False


def _tags(member: Any) -> set[object]:
    """What pydantic may call a union member in a path: its class name, its Literal tags."""
    if not _is_model(member):
        return {getattr(member, "__name__", None)}
    tags: set[object] = {member.__name__}
    for field in member.model_fields.values():
        if get_origin(field.annotation) is Literal:
            tags.update(get_args(field.annotation))
    return tags


def _unwrap(kind: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
            continue
        if get_origin(kind) in (Union, types.UnionType):
            members = [arg for arg in get_args(kind) if arg is not _NONE]
            if len(members) == 1:
                kind = members[0]
                continue
        return kind


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)
