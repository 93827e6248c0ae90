"""Write docs/config-reference.md from the config's pydantic models, so it cannot drift.

Usage::

    python scripts/gen_config_reference.py            # (re)write docs/config-reference.md
    python scripts/gen_config_reference.py --check    # exit 1 if the file is out of date

Every key gets a row: its path, type, default and description (``Field(description=...)``).
A nested mapping's keys follow it (``store.url``); a list of mappings (``flows[]``) and each
``type`` of a ``source:`` or ``destinations:`` entry get a section of their own. Only this
package's transports are listed, whatever else is installed.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from probe.config.models import Config
from probe.durations import MAX_DURATION, MIN_DURATION, format_duration, parse_duration

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
_NONE = type(None)
_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
HEADER = """\
# Config reference

<!-- Generated from the models in probe/config/ and probe/transports/ by
     scripts/gen_config_reference.py: do not edit; run it after changing a model. -->

Every key of the config file, with its type, its default and what it means. How the config
behaves (durations, `${ENV}` and `*_file` secrets, layering, reload) is in
[Configuration](configuration.md). Unknown keys are errors.

- A **duration** is a number and a unit, such as `500ms`, `30s`, `5m`, `1h`, `90d` or
  `1h30m`; a bare number is seconds.
- Any key but `template_file`, `ca_file`, `cert_file` and `key_file` may be given as
  `KEY_file`, naming a file that holds its value (a secret).
- A path such as `flows[].source.url` is the `url` of the `source` of any flow. A
  mapping (such as `store`) has no default of its own: its keys, which follow it, have.
"""


@dataclass(slots=True)
class Row:
    """One key: ``| path | type | default | description |``."""

    path: str
    type: str
    default: str
    description: str


@dataclass(slots=True)
class Section:
    """A heading and the rows of one model, at ``prefix`` (``flows[].``)."""

    title: str
    model: type[BaseModel]
    prefix: str
    instance: BaseModel | None = None
    rows: list[Row] = field(default_factory=list)


def render() -> str:
    """The whole reference, as Markdown."""
    parts = [HEADER]
    for section in sections(Config):
        parts.append(f"\n## {section.title}\n")
        intro = _docstring(section.model)
        if intro:
            parts.append(f"\n{intro}\n")
        parts.append("\n| key | type | default | description |\n|---|---|---|---|\n")
        parts.extend(
            f"| `{row.path}` | {_cell(row.type)} | {_cell(row.default)} | "
            f"{_cell(row.description)} |\n"
            for row in section.rows
        )
    return "".join(parts)


def sections(root: type[BaseModel]) -> list[Section]:
    """The root's section and every one found under it, in the order they are found."""
    todo = [Section("Top level", root, "")]
    done = []
    while todo:
        section = todo.pop(0)
        todo.extend(_fill(section, section.model, section.prefix, section.instance))
        done.append(section)
    return done


def _fill(
    section: Section, model: type[BaseModel], prefix: str, instance: BaseModel | None
) -> Iterator[Section]:
    """Add the rows of ``model``'s keys to ``section``; yield the sections they lead to."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        default = _default_of(info, name, instance)
        kind, meta = _unwrap(info.annotation, list(info.metadata))
        section.rows.append(Row(path, _type(kind, meta), _default(default, meta), _about(info)))
        if _is_model(kind):
            nested = default if isinstance(default, BaseModel) else None
            yield from _fill(section, kind, f"{path}.", nested)
        elif get_origin(kind) is list:
            item, _ = _unwrap(get_args(kind)[0], [])
            yield from _sections_of(item, f"{path}[]")
        else:
            yield from _sections_of(kind, path, models_only=True)


def _sections_of(kind: Any, path: str, *, models_only: bool = False) -> Iterator[Section]:
    """A section for a model at ``path``, or one per ``type`` of a union of models."""
    if _is_model(kind) and not models_only:
        yield Section(f"`{path}`", kind, f"{path}.")
    elif _is_union(kind):
        for member in _variants(kind):
            yield Section(f"`{path}` with `type: {_tag(member)}`", member, f"{path}.")


def _variants(kind: Any) -> list[type[BaseModel]]:
    """The union's models that this package defines, in their order."""
    members = [_unwrap(arg, [])[0] for arg in get_args(kind) if arg is not _NONE]
    return [m for m in members if _is_model(m) and m.__module__.startswith("probe.")]


def _tag(model: type[BaseModel]) -> str:
    """The ``type:`` a union member is chosen by (its class name if it has none)."""
    info = model.model_fields.get("type")
    if info is not None and get_origin(info.annotation) is Literal:
        return ", ".join(str(arg) for arg in get_args(info.annotation))
    return model.__name__


def _default_of(info: FieldInfo, name: str, instance: BaseModel | None) -> Any:
    """What a key is when left out: from the enclosing default (``defaults.slo``) if any."""
    if instance is not None:
        return getattr(instance, name)
    if info.is_required():
        return _REQUIRED
    return info.get_default(call_default_factory=True)


_REQUIRED = object()


def _unwrap(kind: Any, meta: list[Any]) -> tuple[Any, list[Any]]:
    """``Annotated[X, ...]`` and ``X | None`` as ``X``, the annotations gathered."""
    while True:
        if get_origin(kind) is Annotated:
            kind, *more = get_args(kind)
            meta = [*meta, *more]
        elif _is_union(kind) and len([a for a in get_args(kind) if a is not _NONE]) == 1:
            kind = next(a for a in get_args(kind) if a is not _NONE)
        else:
            return kind, meta


def _type(kind: Any, meta: list[Any]) -> str:
    """``duration, 10ms to 366d``, ``integer, from 1 to 10000``, ``list of string`` ..."""
    duration = _duration(meta)
    if duration is not None:
        return duration
    if _is_model(kind):
        return "mapping"
    origin, args = get_origin(kind), get_args(kind)
    if origin is Literal:
        return _one_of([f"`{arg}`" for arg in args])
    if origin is list:
        return f"list of {_type(*_unwrap(args[0], []))}"
    if origin is dict:
        return f"mapping of {_type(*_unwrap(args[0], []))} to {_type(*_unwrap(args[1], []))}"
    if _is_union(kind):
        members = [arg for arg in args if arg is not _NONE]
        if all(_is_model(member) for member in members):
            return "mapping, by `type`"
        return _one_of([_type(*_unwrap(member, [])) for member in members])
    return ", ".join([_SCALARS.get(kind, getattr(kind, "__name__", str(kind))), *_bounds(meta)])


def _one_of(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _duration(meta: list[Any]) -> str | None:
    """``duration, 1ms to 366d`` if a validator parses durations; None if not."""
    for item in meta:
        func = item.func if isinstance(item, BeforeValidator) else None
        keywords = func.keywords if isinstance(func, functools.partial) else {}
        if func is parse_duration or getattr(func, "func", None) is parse_duration:
            least = keywords.get("minimum", MIN_DURATION)
            most = format_duration(keywords.get("maximum", MAX_DURATION))
            return f"duration, {format_duration(least) if least else '0'} to {most}"
    return None


_BOUNDS = (
    (annotated_types.Ge, "from", "ge"),
    (annotated_types.Gt, "above", "gt"),
    (annotated_types.Le, "to", "le"),
    (annotated_types.Lt, "below", "lt"),
)


def _bounds(meta: list[Any]) -> list[str]:
    """``["from 1 to 10000"]`` from ``Field(ge=1, le=10000)``; nothing if unbounded."""
    found = [
        f"{word} {getattr(item, name)}"
        for kind, word, name in _BOUNDS
        for item in meta
        if isinstance(item, kind)
    ]
    if not found:
        return []
    # "from 1 to 10000" reads as one range; "above 0, below 1" as two limits.
    return [" ".join(found) if len(found) == 2 and "from" in found[0] else ", ".join(found)]


def _default(value: Any, meta: list[Any]) -> str:
    """A default as YAML would spell it; a duration as one (``5m``)."""
    if value is _REQUIRED:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return ""  # its keys follow, each with its default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and _duration(meta) is not None:
        return f"`{format_duration(value)}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, list | dict):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def _about(info: FieldInfo) -> str:
    return " ".join((info.description or "").split())


def _docstring(model: type[BaseModel]) -> str:
    """The model's docstring's first paragraph, its ``code`` as Markdown's `code`."""
    text = inspect.cleandoc(model.__doc__ or "").split("\n\n", 1)[0]
    return " ".join(text.split()).replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _is_union(kind: Any) -> bool:
    return get_origin(kind) in (Union, types.UnionType)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the file to write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run scripts/gen_config_reference.py")
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
