"""docs/config-reference.md is generated from the models, and says what they say."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

from probe.config import maintenance
from probe.config import models as config_models
from probe.config.models import Config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "config-reference.md"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """scripts/gen_config_reference.py, imported as a module."""
    path = ROOT / "scripts" / "gen_config_reference.py"
    spec = importlib.util.spec_from_file_location("gen_config_reference", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_reference_is_what_the_models_say(generator: ModuleType) -> None:
    """Fails when a model changes without the doc: run scripts/gen_config_reference.py."""
    assert REFERENCE.read_text(encoding="utf-8") == generator.render()


def test_check_finds_a_stale_reference(generator: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "config-reference.md"
    stale.write_text(REFERENCE.read_text(encoding="utf-8").replace("`2000`", "`1000`"))
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0


def _schema_paths(defs: dict[str, Any], node: dict[str, Any], prefix: str) -> Iterator[str]:
    """Every key's path in a JSON schema: a second reading of the models, not the generator's."""
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            yield from _schema_paths(defs, sub, prefix)
    if "items" in node:
        yield from _schema_paths(defs, node["items"], f"{prefix}[]")
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from _schema_paths(defs, sub, path)


def test_every_key_has_a_row() -> None:
    schema = Config.model_json_schema()
    paths = set(_schema_paths(schema["$defs"], schema, ""))
    rows = set(re.findall(r"(?m)^\| `([^`]+)` \|", REFERENCE.read_text(encoding="utf-8")))
    assert len(paths) > 100  # flows[].source.url and the like, from every transport
    assert sorted(paths - rows) == []
    assert sorted(rows - paths) == []


def test_each_source_and_destination_type_has_a_section() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for kind in ("http", "mllp", "sql"):
        assert f"## `flows[].source` with `type: {kind}`" in text
        assert f"## `flows[].destinations[]` with `type: {kind}`" in text


def test_every_key_of_the_config_models_has_a_description() -> None:
    """The transports' models are their own; those of probe/config/ are checked here."""
    models = [
        model
        for module in (config_models, maintenance)
        for model in vars(module).values()
        if isinstance(model, type)
        and issubclass(model, BaseModel)
        and model.__module__ == module.__name__
    ]
    assert {m.__name__ for m in models} >= {"Config", "Store", "Flow", "MaintenanceWindow"}
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name, info in model.model_fields.items()
        if not info.description
    ]
    assert missing == []
