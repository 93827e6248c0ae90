"""The transport registry: the built-in transports, and one another package installs.

The third-party transport here is real: a module and a ``*.dist-info`` directory (its
``METADATA`` and ``entry_points.txt``) on ``sys.path``, found by `importlib.metadata` as
pip would leave them. It is a mailbox in the process: the source posts the probe id, the
observer finds it there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from probe.config.models import DestinationSpec
from probe.errors import StartupError
from probe.model import ProbeMessage, new_probe_id, utcnow
from probe.transports import Resources, Transport
from probe.transports.http.spec import HttpSource
from probe.transports.registry import BUILTIN, load, transports

MAILBOX = '''
"""A transport of another package: probes posted to, and found in, a box in memory."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from probe.durations import Interval
from probe.model import ProbeMessage, Receipt, Sighting, utcnow
from probe.transports import Transport
from probe.transports.base import Destination, Resources, poll_until
from probe.transports.spec import NAME_PATTERN, SLO, Model

BOXES: dict[str, list[str]] = {}


class MailboxSource(Model):
    type: Literal["mailbox"]
    box: str

    @property
    def summary(self) -> str:
        return f"mailbox {self.box}"


class MailboxDestination(Model):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["mailbox"]
    box: str
    poll: Interval | None = None
    slo: SLO = SLO()


class Poster:
    def __init__(self, config: MailboxSource, resources: Resources) -> None:
        self.box = BOXES.setdefault(config.box, [])

    async def send(self, probe: ProbeMessage) -> Receipt:
        self.box.append(probe.probe_id)
        return Receipt(detail=f"posted, {len(self.box)} in the box")

    async def aclose(self) -> None:
        pass


class Reader:
    start_error = None

    def __init__(self, spec: Destination, resources: Resources) -> None:
        self.name, self.poll = spec.name, spec.poll
        self.box = BOXES.setdefault(spec.config.box, [])

    async def start(self) -> None:
        pass

    async def expect(self, probe: ProbeMessage, deadline: float) -> Sighting | None:
        async def look() -> Sighting | None:
            count = self.box.count(probe.probe_id)
            if not count:
                return None
            return Sighting(probe.probe_id, self.name, utcnow(), time.monotonic(), count)

        return await poll_until(look, every=self.poll, deadline=deadline)

    async def aclose(self) -> None:
        pass


TRANSPORT = Transport(
    type="mailbox",
    source_spec=MailboxSource,
    destination_spec=MailboxDestination,
    source=Poster,
    observer=Reader,
)
NOT_A_TRANSPORT = "mailbox"
'''


def install(site: Path, entry_points: str, *, name: str = "probe-mailbox") -> Path:
    """A distribution as pip installs it into ``site``: its module and its dist-info."""
    (site / "probe_mailbox.py").write_text(MAILBOX)
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[probe.transports]\n{entry_points}\n")
    return site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path``; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("probe_mailbox", None)


def _probe() -> ProbeMessage:
    now = utcnow()
    return ProbeMessage(probe_id=new_probe_id(), flow="post", slot=now, sent_at=now)


def test_the_built_in_transports_come_first_in_their_order() -> None:
    assert [t.type for t in BUILTIN] == ["http", "mllp", "sql"]
    assert list(transports().by_type)[:3] == ["http", "mllp", "sql"]
    assert transports().get("http").source_spec is HttpSource


async def test_a_transport_of_another_package_is_found_configured_and_probed(
    site: Path,
) -> None:
    install(site, "mailbox = probe_mailbox:TRANSPORT")
    registry = load()
    assert list(registry.by_type) == ["http", "mllp", "sql", "mailbox"]
    source_config = TypeAdapter(registry.source_union()).validate_python(
        {"type": "mailbox", "box": "lab"}
    )
    dest_config = TypeAdapter(registry.destination_union()).validate_python(
        {"name": "inbox", "type": "mailbox", "box": "lab", "poll": "10ms"}
    )
    spec = DestinationSpec(
        name="inbox", config=dest_config, poll=0.01, slo_latency=1.0, slo_objective=0.99
    )
    resources = Resources()
    source = registry.make_source(source_config, resources)
    observer = registry.make_observer(spec, resources)
    probe = _probe()
    try:
        await observer.start()
        assert observer.start_error is None
        assert await observer.expect(probe, time.monotonic() + 0.05) is None  # not sent yet
        receipt = await source.send(probe)
        sighting = await observer.expect(probe, time.monotonic() + 1.0)
    finally:
        await source.aclose()
        await observer.aclose()
        await resources.aclose()
    assert receipt.detail == "posted, 1 in the box"
    assert sighting is not None
    assert (sighting.probe_id, sighting.destination, sighting.count) == (
        probe.probe_id,
        "inbox",
        1,
    )


def test_a_wrong_config_of_another_transport_is_a_validation_error(site: Path) -> None:
    install(site, "mailbox = probe_mailbox:TRANSPORT")
    adapter = TypeAdapter(load().source_union())
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"type": "mailbox", "box": "lab", "colour": "red"})
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python({"type": "ftp"})
    (error,) = caught.value.errors()
    assert error["ctx"]["expected_tags"] == "'http', 'mllp', 'sql', 'mailbox'"


@pytest.mark.slow
async def test_probe_once_runs_a_flow_of_another_package(site: Path) -> None:
    """The real CLI, in a process of its own that finds the package on its path."""
    install(site, "mailbox = probe_mailbox:TRANSPORT")
    config = {
        "defaults": {"poll": "10ms", "timeout": "5s"},
        "flows": [
            {
                "name": "post",
                "source": {"type": "mailbox", "box": "lab"},
                "destinations": [{"name": "inbox", "type": "mailbox", "box": "lab"}],
            }
        ],
    }
    (site / "probe.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(site)}
    for command, expected in (
        ("check-config", "post: mailbox lab -> inbox (mailbox)"),
        ("once", "post  inbox"),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "probe", command, "-c", "probe.yaml", cwd=site, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        assert expected in out.decode(), out.decode()
    rows = out.decode().splitlines()
    assert rows[1].split()[:3] == ["post", "inbox", "delivered"]


_BROKEN = [
    pytest.param(
        "mailbox = probe_nowhere:TRANSPORT",
        "transport entry point mailbox = probe_nowhere:TRANSPORT, of probe-mailbox 1.0 cannot "
        "be loaded: ModuleNotFoundError: No module named 'probe_nowhere'",
        id="no-module",
    ),
    pytest.param(
        "mailbox = probe_mailbox:MISSING",
        "transport entry point mailbox = probe_mailbox:MISSING, of probe-mailbox 1.0 cannot "
        "be loaded: AttributeError: module 'probe_mailbox' has no attribute 'MISSING'",
        id="no-attribute",
    ),
    pytest.param(
        "mailbox = probe_mailbox:NOT_A_TRANSPORT",
        "transport entry point mailbox = probe_mailbox:NOT_A_TRANSPORT, of probe-mailbox 1.0 "
        "is a str, not a probe.transports.Transport",
        id="not-a-transport",
    ),
    pytest.param(
        "post = probe_mailbox:TRANSPORT",
        "transport entry point post = probe_mailbox:TRANSPORT, of probe-mailbox 1.0 is the "
        "transport 'mailbox': name them alike",
        id="other-name",
    ),
]


@pytest.mark.parametrize(("entry_point", "message"), _BROKEN)
def test_a_broken_entry_point_says_which_and_why(
    site: Path, entry_point: str, message: str
) -> None:
    install(site, entry_point)
    with pytest.raises(StartupError) as caught:
        load()
    assert str(caught.value) == message


def test_a_type_that_is_taken_is_refused(site: Path) -> None:
    install(site, "http = probe_mailbox:TRANSPORT")
    (site / "probe_mailbox.py").write_text(
        MAILBOX.replace('type="mailbox"', 'type="http"').replace(
            'Literal["mailbox"]', 'Literal["http"]'
        )
    )
    with pytest.raises(StartupError) as caught:
        load()
    assert str(caught.value) == (
        "transport entry point http = probe_mailbox:TRANSPORT, of probe-mailbox 1.0: "
        "the type 'http' is taken"
    )


def test_a_model_without_its_type_field_is_refused_where_it_is_made() -> None:
    with pytest.raises(TypeError) as caught:
        Transport(
            type="ftp",
            source_spec=HttpSource,
            destination_spec=HttpSource,
            source=BUILTIN[0].source,
            observer=BUILTIN[0].observer,
        )
    assert str(caught.value) == "transport 'ftp': HttpSource needs a field type: Literal['ftp']"


async def test_a_broken_entry_point_is_one_line_from_the_cli_not_a_traceback(site: Path) -> None:
    """Importing the config models loads the registry; the CLI must report that cleanly."""
    install(site, "mailbox = probe_nowhere:TRANSPORT")
    (site / "probe.yaml").write_text("flows: []\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "probe", "check-config", "-c", "probe.yaml", cwd=site, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in err.decode(), err.decode()
    assert err.decode().startswith(
        "error: transport entry point mailbox = probe_nowhere:TRANSPORT, of probe-mailbox 1.0 "
        "cannot be loaded: ModuleNotFoundError"
    ), err.decode()
