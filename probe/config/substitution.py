"""``${ENV}`` and ``*_file`` filled in, before validation, and the secrets they bring.

    >>> where = Locator(Path("/etc/probe/probe.yaml"), {}, None)
    >>> found = Substitution({"GS_TOKEN": "t0k"}, where, base=Path("/etc/probe"))
    >>> found.value({"headers": {"Authorization": "Bearer ${GS_TOKEN}"}}, ("flows", 0))
    {'headers': {'Authorization': 'Bearer t0k'}}
    >>> found.secrets
    {'t0k'}

``${NAME}`` is the environment variable NAME, except the probe's own template variables
(`TEMPLATE_VARS`), which are filled in for each probe. A key ``X_file`` (other than the
ones that name real files, `PATH_KEYS`) becomes ``X``, holding the file's content: that is
how secrets stay out of the config file. Every value filled in is masked in config errors
(`Locator.hidden`); those that are secrets are masked in the logs too (`secrets`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from probe.config.problems import Locator, PathT

TEMPLATE_VARS = frozenset({"probe_id", "sent_at", "flow", "destination"})
PATH_KEYS = frozenset({"template_file", "ca_file", "cert_file", "key_file"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_PLACES = frozenset({"headers", "api_token", "notify"})
_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL", re.IGNORECASE)


class Substitution:
    """One pass over the data: what it filled in, the secrets found, the problems met."""

    def __init__(self, env: dict[str, str], where: Locator, *, base: Path) -> None:
        self.env, self.where, self.base = env, where, base
        self.secrets: set[str] = set()
        self.problems: list[str] = []

    def value(self, value: Any, at: PathT) -> Any:
        """``value`` (at ``at``) with ``${ENV}`` and ``*_file`` filled in."""
        if isinstance(value, dict):
            return self._mapping(value, at)
        if isinstance(value, list):
            return [
                self.value(item, (*at, i)) if _has_work(item) else item
                for i, item in enumerate(value)
            ]
        if isinstance(value, str) and "${" in value:
            return _VAR.sub(lambda match: self._env_value(match, at), value)
        return value

    def _mapping(self, value: dict[Any, Any], at: PathT) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, item in value.items():
            # Most values are neither containers nor hold a ``${``: kept without a call.
            sub = self.value(item, (*at, key)) if _has_work(item) else item
            if isinstance(key, str) and key.endswith("_file") and key not in PATH_KEYS:
                secret = self._read_secret(sub, (*at, key))
                if secret is not None:
                    self.secrets.add(secret)
                    self.where.hidden.add(secret)
                    out[key.removesuffix("_file")] = secret
                continue
            out[key] = sub
        return out

    def _env_value(self, match: re.Match[str], at: PathT) -> str:
        name = match.group(1)
        if name in TEMPLATE_VARS:
            return match.group(0)
        if name not in self.env:
            self.problems.append(self.where.at(at, f"environment variable {name} is not set"))
            return match.group(0)
        value = self.env[name]
        if value:  # masked in every config error, before the value is validated
            self.where.hidden.add(value)
        # Header values (Authorization, API keys), the API token and notification URLs
        # (Apprise URLs hold tokens) are secrets whatever the name, in the logs too; other
        # values are masked only in config errors.
        if value and (_SECRET_NAME.search(name) or _SECRET_PLACES.intersection(at)):
            self.secrets.add(value)
        return value

    def _read_secret(self, value: Any, at: PathT) -> str | None:
        if not isinstance(value, str):
            self.problems.append(self.where.at(at, "must be a file path"))
            return None
        file = Path(value) if Path(value).is_absolute() else self.base / value
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            message = f"cannot read secret file {value}: {exc.strerror or exc}"
        except UnicodeDecodeError:
            message = f"secret file {value} is not UTF-8"
        except ValueError:  # a NUL in the path
            message = f"cannot read secret file {value!r}: invalid path"
        self.problems.append(self.where.at(at, message, about=value))
        return None


def _has_work(item: Any) -> bool:
    return isinstance(item, dict | list) or (isinstance(item, str) and "${" in item)
