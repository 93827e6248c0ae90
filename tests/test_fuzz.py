"""Fuzzing the three places where outside text comes in: config files, HTTP replies, HL7.

Each property is the contract its module documents: a located `ConfigError`, a
`TransportError` subclass, or a `ProtocolError`, and never any other exception. Examples
are derandomized so CI runs the same cases every time.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from probe.cli import describe_flow
from probe.config.loader import MAX_DEPTH, load_config
from probe.config.models import resolve_flows
from probe.errors import ConfigError, ProtocolError, TransportError
from probe.model import ProbeMessage, Sighting, new_probe_id
from probe.transports import Resources
from probe.transports.http.spec import HttpDestination
from probe.transports.http.transport import HttpPollObserver
from probe.transports.mllp import hl7v2
from probe.transports.mllp.accept import close_writer
from probe.transports.mllp.framing import END, START, FrameReader, frame
from probe.transports.mllp.listener import PROBE_ID, MllpListener
from probe.transports.mllp.spec import MllpSource
from probe.transports.mllp.transport import Template

DEMO = Path(__file__).parent.parent / "config" / "demo.yaml"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
LIMIT = 10.0  # a hang guard for one example's network step, never a timing assertion
FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- config files -------------------------------------------------------------------------

KEYS = [
    "flows", "source", "destinations", "type", "name", "url", "interval", "timeout",
    "headers", "listen", "match", "slo", "poll", "store", "server", "api_token_file",
    "password_file", "ca_file", "tls", "cron", "maintenance", "weekly", "once", "labels",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # beyond any float
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["30s", "fast", "-1s", "0", "1h30m", "${ENV_SET}", "${ENV_UNSET}",
                     "${probe_id}", "*/5 * * * *", "$[[", "http://127.0.0.1:1/", "mllp", "http",
                     "sql", "127.0.0.1:0", "nowhere", "/", "a\x00b", "x" * 300]),
)  # fmt: skip


# Named functions, not lambdas: Hypothesis reads an `extend` function's source to check it
# uses its argument, and misreads a lambda spread over several lines.
def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=25)
SNIPPETS = [b":", b"{", b"[", b"]", b"\t", b"&a ", b"*a", b"!!python/object:os.system ",
            b"\xff", b"\xc3", b"---\n", b"? ", b"%YAML 9\n", b"\x00", b"\x1b", b"<<: ", b"'",
            b'"\\', b"\n  - ", b"#"]  # fmt: skip


def _located(problem: str, path: Path) -> bool:
    """``file:line: ...``, the form every problem must have (a YAML path may follow)."""
    return re.match(re.escape(str(path)) + r":\d+: \S", problem) is not None


def _check_config_bytes(path: Path, data: bytes) -> None:
    """What `probe check-config` does with ``data``: a valid config, or located problems."""
    path.write_bytes(data)
    try:
        loaded = load_config(path, environ={"ENV_SET": "value"})
    except ConfigError as exc:
        problems = exc.problems
    else:
        for flow in resolve_flows(loaded.config):
            assert describe_flow(flow).startswith(f"{flow.name}: ")
        return
    assert problems
    unlocated = [p for p in problems if not _located(p, path)]
    assert not unlocated, unlocated


@settings(FUZZ, max_examples=300)
@given(document=VALUES)
def test_any_yaml_document_is_a_config_or_located_problems(tmp_path: Path, document: Any) -> None:
    _check_config_bytes(tmp_path / "probe.yaml", yaml.safe_dump(document).encode())


def _mutate(data: st.DataObject, document: Any) -> Any:
    """Delete or replace one node somewhere in the document."""
    document = copy.deepcopy(document)
    steps: list[tuple[Any, Any]] = []
    node = document
    while isinstance(node, dict | list) and node and data.draw(st.booleans()):
        if isinstance(node, dict):
            key: Any = data.draw(st.sampled_from(sorted(node)))
        else:
            key = data.draw(st.integers(0, len(node) - 1))
        steps.append((node, key))
        node = node[key]
    if steps:
        parent, key = steps[-1]
        if data.draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = data.draw(VALUES)
    return document


@settings(FUZZ, max_examples=300)
@given(data=st.data())
@pytest.mark.slow
def test_mutated_demo_config_is_a_config_or_located_problems(
    tmp_path: Path, data: st.DataObject
) -> None:
    document = yaml.safe_load(DEMO.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        document = _mutate(data, document)
    _check_config_bytes(tmp_path / "probe.yaml", yaml.safe_dump(document).encode())


@settings(FUZZ, max_examples=300)
@given(
    at=st.integers(0, 10_000),
    cut=st.integers(0, 20),
    insert=st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=12)),
)
@example(at=0, cut=0, insert=b"[" * 5000)  # deeper than PyYAML's recursion
@example(at=0, cut=0, insert=b"a: &a [*a]\n")  # an alias that contains itself
@example(at=100, cut=0, insert=b"\x00")  # a character PyYAML's reader refuses
@example(at=100, cut=0, insert=b"\xff")  # not UTF-8
def test_broken_demo_config_text_is_located_problems(
    tmp_path: Path, at: int, cut: int, insert: bytes
) -> None:
    text = DEMO.read_bytes()
    at = min(at, len(text))
    _check_config_bytes(tmp_path / "probe.yaml", text[:at] + insert + text[at + cut :])


@settings(FUZZ, max_examples=200)
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_arbitrary_bytes_are_a_config_or_located_problems(tmp_path: Path, data: bytes) -> None:
    _check_config_bytes(tmp_path / "probe.yaml", data)


def test_the_unmutated_demo_config_is_valid(tmp_path: Path) -> None:
    """The mutations start from a valid config, so they test the loader, not a typo."""
    assert len(load_config(DEMO).config.flows) == 2


def _problems(path: Path, text: bytes) -> list[str]:
    path.write_bytes(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [p.replace(f"{path}:", "") for p in caught.value.problems]


HTTP_FLOW = b"flows:\n  - name: a\n    source: {type: http, url: 'http://127.0.0.1:1/', %s}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(b"a: 1\nb: 2\ntimezone: \xff\n", "3: config is not UTF-8: invalid start byte",
                     id="not-utf8"),
        pytest.param(b"a: 1\nb: \x00\n",
                     "2: YAML error: unacceptable character #x0000: special characters are "
                     "not allowed", id="nul"),
        pytest.param(b"[" * 5000 + b"]" * 5000,
                     f"1: nested more than {MAX_DEPTH} levels deep, or an alias that contains "
                     "itself", id="too-deep-for-pyyaml"),
        pytest.param(b"shutdown_grace: 1" + b"0" * 400 + b"\n",
                     f"1: shutdown_grace: invalid duration 1{'0' * 400}", id="huge-integer"),
        pytest.param(HTTP_FLOW % b"headers: {X_file: /bin/sh}",
                     "3: flows[0].source.headers.X_file: secret file /bin/sh is not UTF-8",
                     id="secret-file-not-utf8"),
        pytest.param(HTTP_FLOW % b'headers: {X_file: "a\\0b"}',
                     "3: flows[0].source.headers.X_file: cannot read secret file 'a\\x00b': "
                     "invalid path", id="secret-file-nul"),
        pytest.param(HTTP_FLOW % (b"tls: {ca_file: " + b"a" * 300 + b"}"),
                     f"3: flows[0].source.tls.ca_file: CA file '{'a' * 300}' not found",
                     id="ca-file-name-too-long"),
    ],
)  # fmt: skip
def test_fuzz_findings_are_located_problems(tmp_path: Path, text: bytes, expected: str) -> None:
    assert _problems(tmp_path / "probe.yaml", text) == [expected]


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path / "probe.yaml", b"labels: &a [*a]\n")
    assert problem.startswith("1: labels[0][0]")
    assert problem.endswith(f"nested more than {MAX_DEPTH} levels deep, or an alias that "
                            "contains itself")  # fmt: skip


# --- HTTP observer replies ----------------------------------------------------------------

PROBE = "PR19A2B3C4D5E6F7A8B9"
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
    st.just(PROBE), st.integers(min_value=10**15, max_value=10**30),  # times beyond any date
    st.sampled_from(["2026-11-26T10:00:00", "2026-11-26T10:00:00+01:00", "9999-12-31T23:59:59",
                     "0001-01-01T00:00:00-23:59", "not a time"]),
)  # fmt: skip


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["id", "at", "items", "x"]), inner, max_size=4),
    )


JSON_VALUES = st.recursive(JSON_LEAVES, _json_containers, max_leaves=15)
BODIES = st.one_of(
    st.binary(max_size=500),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda head, tail: head + PROBE.encode() + tail, st.binary(max_size=50),
              st.binary(max_size=50)),
    st.sampled_from([b"\xff\xfe" + PROBE.encode("utf-16-le"), b'{"id": "' + PROBE.encode() + b'"',
                     b"[" * 100_000, b"x" * 3_000_000, b"\x1f\x8b\x08\x00garbage"]),
)  # fmt: skip
CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "text/plain; charset=utf-8", "text/plain; charset=nope",
                     "text/html; charset=utf-16", "application/json; charset=latin-1", ""]),
    st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=30),
)  # fmt: skip
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "br", "zstd", "identity", "gzip, gzip", "x"])
LENGTHS = st.sampled_from(["exact", "none", "short", "long", "bogus", "chunked", "bad-chunks"])


def _response(status: int, body: bytes, *, content_type: str, encoding: str, length: str) -> bytes:
    head = [f"HTTP/1.1 {status} Whatever", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    if encoding:
        head.append(f"Content-Encoding: {encoding}")
    sizes = {"exact": len(body), "short": max(0, len(body) - 3), "long": len(body) + 10}
    if length in sizes:
        head.append(f"Content-Length: {sizes[length]}")
    elif length == "bogus":
        head.append("Content-Length: twelve")
    elif length in ("chunked", "bad-chunks"):
        head.append("Transfer-Encoding: chunked")
        size = f"{len(body):x}" if length == "chunked" else "zz"
        body = f"{size}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@asynccontextmanager
async def _http_server(response: bytes) -> AsyncIterator[int]:
    """An HTTP server on loopback that answers every request with exactly ``response``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


MATCHES = [
    pytest.param({}, id="regex"),
    pytest.param({"match": {"jsonpath": "$..id"}}, id="jsonpath"),
    pytest.param({"match": {"jsonpath": "$..id"}, "time_field": "at"}, id="time-field"),
]


async def _observe(response: bytes, options: dict[str, Any]) -> Sighting | None:
    async with _http_server(response) as port:
        config = HttpDestination.model_validate(
            {"name": "d", "type": "http", "url": f"http://127.0.0.1:{port}/x", **options}
        )
        resources = Resources()
        observer = HttpPollObserver(config, resources, poll=1.0)
        probe = ProbeMessage(probe_id=PROBE, flow="f", slot=NOW, sent_at=NOW)
        try:
            # A deadline already past: exactly one look, as for a probe resumed late.
            return await asyncio.wait_for(observer.expect(probe, time.monotonic()), LIMIT)
        finally:
            await resources.aclose()


@pytest.mark.parametrize("options", MATCHES)
@settings(FUZZ, max_examples=60)
@given(
    status=st.one_of(st.integers(200, 599), st.integers(600, 999)),
    body=BODIES,
    content_type=CONTENT_TYPES,
    encoding=ENCODINGS,
    length=LENGTHS,
)
@example(status=200, body=b'[{"id": "' + PROBE.encode() + b'", "at": 1e300}]',
         content_type="application/json", encoding="", length="exact")  # fmt: skip
def test_any_http_reply_is_a_sighting_none_or_transport_error(
    options: dict[str, Any], status: int, body: bytes, content_type: str, encoding: str,
    length: str,
) -> None:  # fmt: skip
    response = _response(status, body, content_type=content_type, encoding=encoding, length=length)
    try:
        sighting = asyncio.run(_observe(response, options))
    except TransportError:
        return
    assert sighting is None or (sighting.probe_id == PROBE and sighting.count >= 1)


@pytest.mark.parametrize("options", MATCHES)
def test_a_plain_json_reply_with_the_probe_is_a_sighting(options: dict[str, Any]) -> None:
    """The fuzz oracle is not vacuous: the server and observer do find a probe when it is there."""
    body = json.dumps([{"id": PROBE, "at": "2026-11-26T10:00:01"}]).encode()
    response = _response(200, body, content_type="application/json", encoding="", length="exact")
    sighting = asyncio.run(_observe(response, options))
    assert sighting is not None
    assert sighting.count == 1
    expected = datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC) if "time_field" in options else None
    assert sighting.arrived_at == expected


# --- HL7 ----------------------------------------------------------------------------------

HL7_PIECES = st.sampled_from(["MSH", "PID", "MSA", "ERR", "ORC", "|", "^", "~", "\\", "&", "\r",
                              "\n", "ACK", "AA", "AE", "1", "MSH|^~\\&|", "MSH|", "\x00", "é",
                              PROBE, "||||||"])  # fmt: skip
HL7_TEXT = st.one_of(
    st.lists(st.one_of(HL7_PIECES, st.text(max_size=5)), max_size=40).map("".join),
    # A valid-looking MSH with arbitrary encoding characters.
    st.builds(lambda sep, enc, rest: f"MSH{sep}{enc}{sep}{rest}", st.characters(),
              st.text(max_size=5), st.text(max_size=80)),
    st.text(max_size=200),
)  # fmt: skip
FIELD_NAMES = st.one_of(
    st.sampled_from(["MSH-1", "MSH-2", "MSH-9", "MSH-10", "PID-3", "PID-5", "MSA-1", "ERR-8"]),
    st.from_regex(hl7v2.FIELD, fullmatch=True),
)


@settings(FUZZ, max_examples=1000)
@given(text=HL7_TEXT, names=st.lists(FIELD_NAMES, max_size=4))
@example(text="MSHAAMSH~", names=[])  # the hl7 package's create_ack raised IndexError
@example(text="MSH|^~\\&|MSH|^~\\&|MSH|^~\\&|MSH|^~\\&|", names=[])  # ... and TypeError
def test_hl7_functions_raise_only_protocol_errors(text: str, names: list[str]) -> None:
    control_id = hl7v2.raw_control_id(text)
    assert isinstance(control_id, str)
    assert "\r" not in control_id
    try:
        ack = hl7v2.read_ack(text)
    except ProtocolError:
        pass
    else:
        assert isinstance(ack.code, str)
    try:
        message = hl7v2.parse(text)
    except ProtocolError:
        return
    for name in names:
        found = PROBE_ID.findall(hl7v2.field_text(message, name))
        assert all(len(probe_id) == len(PROBE) for probe_id in found)
    assert isinstance(hl7v2.message_type(message), str)
    try:
        reply = hl7v2.ack(message, "AA")
    except ProtocolError:
        return
    assert hl7v2.read_ack(reply).code == "AA"


def test_field_text_rejects_a_field_name_that_is_not_seg_n() -> None:
    message = hl7v2.parse("MSH|^~\\&|A|B|||20261126||ADT^A08|X1|P|2.5\r")
    assert hl7v2.field_text(message, "MSH-10") == "X1"
    with pytest.raises(ValueError, match="invalid HL7 field 'MSH10'"):
        hl7v2.field_text(message, "MSH10")


LATIN = st.text(st.characters(codec="latin-1"), max_size=12)


@settings(FUZZ, max_examples=300)
@given(
    template=st.sampled_from(["adt_a08", "orm_o01"]),
    id_field=st.sampled_from(["MSH-10", "PID-3", "ORC-2", "OBR-2", "NTE-3"]),
    encoding=st.sampled_from(["utf-8", "latin-1", "cp1252"]),
    patient_id=LATIN,
    patient_name=LATIN,
    application=LATIN,
)
@example(template="adt_a08", id_field="MSH-10", encoding="latin-1", patient_id="1",
         patient_name="A", application="A|B")  # shifted every later MSH field  # fmt: skip
def test_a_probe_id_in_any_field_survives_the_round_trip(
    template: str, id_field: str, encoding: str, patient_id: str, patient_name: str,
    application: str,
) -> None:  # fmt: skip
    try:
        config = MllpSource.model_validate({
            "type": "mllp", "host": "127.0.0.1", "port": 1, "message": template,
            "id_field": id_field, "encoding": encoding,
            "patient": {"id": patient_id, "name": patient_name},
            "msh": {"sending_application": application},
        })  # fmt: skip
    except ValidationError:
        # Refused only for what would break the message's structure.
        values = patient_id + patient_name + application
        assert re.search(r"[|\r\n\x0b\x1c]", values)
        return
    probe_id = new_probe_id()
    text = hl7v2.build(
        config.template,
        probe_id=probe_id,
        id_field=config.probe_field,
        header=hl7v2.Header(**config.msh.model_dump()),
        patient_id=config.patient.id,
        patient_name=config.patient.name,
        encoding=encoding,
        sent_at=NOW,
    )
    # The source's parse-once template makes the very same text.
    template = Template(
        config.template,
        id_field=config.probe_field,
        header=hl7v2.Header(**config.msh.model_dump()),
        patient_id=config.patient.id,
        patient_name=config.patient.name,
        encoding=encoding,
    )
    assert template.fill(probe_id, NOW)[0] == text
    # Characters outside the code page become "?", as an engine would show them.
    received = hl7v2.parse(text.encode(encoding, errors="replace").decode(encoding))
    assert probe_id in PROBE_ID.findall(hl7v2.field_text(received, id_field))
    assert PROBE_ID.findall(hl7v2.field_text(received, "MSH-10")) == [probe_id]


# --- the MLLP listener under arbitrary bytes ----------------------------------------------

GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.binary(max_size=20), st.sampled_from([START, END, b"\x1c", b"\r"]),
                       HL7_TEXT.map(lambda t: t.encode("utf-8", errors="replace"))),
             max_size=10).map(b"".join),
    HL7_TEXT.map(lambda t: frame(t.encode("utf-8", errors="replace"))),
)  # fmt: skip


def _valid(probe_id: str) -> bytes:
    text = (
        f"MSH|^~\\&|GS|RH|LABKA|RH|20261126100000||ADT^A08|{probe_id}|P|2.5\r"
        f"PID|1||6504611234^^^CPR||Testperson^Åse\r"
    )
    return frame(text.encode("latin-1"))


async def _ack_for(
    reader: asyncio.StreamReader, probe_id: str, *, encoding: str
) -> hl7v2.AckResult:
    """Read frames until the ACK for ``probe_id`` (garbage may have earned replies first)."""
    frames, queue = FrameReader(), []
    while True:
        while not queue:
            data = await reader.read(65536)
            assert data, "the listener closed the connection"
            queue.extend(frames.feed(data))
        ack = hl7v2.read_ack(queue.pop(0).decode(encoding))
        if ack.control_id == probe_id:
            return ack


async def _garbage_then_valid(garbage: bytes, encoding: str) -> MllpListener:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    listener = MllpListener("127.0.0.1:0", encoding=encoding)
    listener.register("MSH-10", ("PID-5",))
    await listener.start()
    try:
        # The same connection: garbage, then a valid message; then a fresh connection.
        for _ in range(2):
            probe_id = new_probe_id()
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            try:
                writer.write(garbage)
                writer.write(_valid(probe_id))
                await writer.drain()
                ack = await asyncio.wait_for(_ack_for(reader, probe_id, encoding=encoding), LIMIT)
            finally:
                await close_writer(writer)
            assert ack.code == "AA"
            assert listener.copies(probe_id, match="MSH-10")
            garbage = b""
        assert listener.running
    finally:
        await listener.aclose()
    assert not errors, [context.get("message") for context in errors]
    return listener


@settings(FUZZ, max_examples=100)
@given(garbage=GARBAGE, encoding=st.sampled_from(["utf-8", "latin-1", "cp1252"]))
@example(garbage=frame(b"MSHAAMSH~"), encoding="utf-8")
@example(garbage=START + b"MSH|^~\\&|" * 50, encoding="latin-1")  # a frame that never ends
def test_the_mllp_listener_keeps_serving_after_any_bytes(garbage: bytes, encoding: str) -> None:
    listener = asyncio.run(_garbage_then_valid(garbage, encoding))
    assert listener.stats.acks_sent >= 2


def test_the_hl7_package_is_what_the_ack_fix_guards_against() -> None:
    """``create_ack`` of the hl7 package itself raises on this MSH; `hl7v2.ack` maps it."""
    message = hl7v2.parse("MSHAAMSH~")
    with pytest.raises(IndexError):
        message.create_ack()
    with pytest.raises(ProtocolError, match="cannot acknowledge the message"):
        hl7v2.ack(message)
    assert isinstance(message, hl7.Message)
