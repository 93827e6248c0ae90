"""Patient identifiers are masked wherever text is logged or stored (DESIGN invariant 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from probe.logs import MASKED, REDACTED, Redactor, mask_patients
from probe.transports.mllp.framing import FrameReader, frame
from tests.helpers import fetch_rows, running, wait_for, write_config

PROBE = "PR19A2B3C4D5E6F7A8B9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ACK AE: patient 010180-1234 unknown",
                     f"ACK AE: patient {MASKED} unknown", id="cpr-with-dash"),
        pytest.param("cpr=0101801234.", f"cpr={MASKED}.", id="cpr-without-dash"),
        pytest.param("test patient 6504611234", f"test patient {MASKED}", id="fictitious-cpr"),
        pytest.param("PID|1||0101801234^^^CPR~" + PROBE + "^^^PROBE||Jensen^Ib||19800101|M",
                     f"PID|1||***~{PROBE}^^^PROBE||***||19800101|M", id="pid-keeps-probe-id"),
        pytest.param("MSH|^~\\&|A|B\rPID|1|X9|123^^^MRN|Y|Doe^Jane\rPV1|1|I",
                     "MSH|^~\\&|A|B\rPID|1|***|***|***|***\rPV1|1|I", id="pid-in-a-message"),
        pytest.param("'MSH|^~\\\\&|A\\rPID|1||123^^^MRN||Doe^Jane\\rPV1|1'",
                     "'MSH|^~\\\\&|A\\rPID|1||***||***\\rPV1|1'", id="pid-in-a-repr"),
        pytest.param(f"{PROBE} at 20261126100000 after 1732617600 s, port 1234567890",
                     f"{PROBE} at 20261126100000 after 1732617600 s, port 1234567890",
                     id="ids-and-stamps-stay"),
        pytest.param("mismatch PID-3,PID-5", "mismatch PID-3,PID-5", id="field-names-stay"),
        pytest.param("not a date 3213991234 or 0113991234", "not a date 3213991234 or 0113991234",
                     id="not-a-cpr-date"),
    ],
)  # fmt: skip
def test_mask_patients(text: str, expected: str) -> None:
    assert mask_patients(text) == expected


def test_the_redactor_masks_secrets_and_patients_in_nested_event_values() -> None:
    redactor = Redactor(["s3cret"])
    event = {"event": "x", "error": "Bearer s3cret for 0101801234",
             "items": ["PID|1||42^^^MRN||Doe^Jane", ("s3cret",)], "n": 3}  # fmt: skip
    assert redactor(None, "warning", event) == {
        "event": "x",
        "error": f"Bearer {REDACTED} for {MASKED}",
        "items": ["PID|1||***||***", (REDACTED,)],
        "n": 3,
    }
    assert Redactor().redact("0101801234") == MASKED  # masking needs no secrets


@asynccontextmanager
async def rejecting_engine(text: str) -> AsyncIterator[int]:
    """An MLLP peer that answers every message with AE and an error text that names a patient."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                for payload in frames.feed(data):
                    control_id = payload.split(b"\r", 1)[0].split(b"|")[9].decode()
                    ack = (f"MSH|^~\\&|ENGINE|RH|||20261126100000||ACK|A1|P|2.5\r"
                           f"MSA|AE|{control_id}|{text}\r")  # fmt: skip
                    writer.write(frame(ack.encode()))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_an_ack_error_naming_a_patient_is_stored_and_logged_masked(
    store_url: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with rejecting_engine("Patient 010180-1234 (0101801234) not found") as port:
        config = {
            "store": {"url": store_url, "flush_interval": "50ms"},
            "server": {"listen": "127.0.0.1:0"},
            "flows": [{"name": "gs-adt", "interval": "200ms", "timeout": "2s",
                       "source": {"type": "mllp", "host": "127.0.0.1", "port": port}}],
        }  # fmt: skip
        async with running(write_config(tmp_path, config)) as daemon:

            async def rejected() -> bool:
                probes, _ = await fetch_rows(daemon.config.store.url)
                return any(p.detail for p in probes)

            await wait_for(rejected, limit=20)
    probes, results = await fetch_rows(store_url)
    details = [p.detail for p in probes if p.detail]
    assert f"ACK AE: Patient {MASKED} ({MASKED}) not found" in details
    assert not [d for d in details if "1234" in d]
    assert {r.reason for r in results} == {"ack_ae"}
    logs = "".join(capfd.readouterr())
    assert "send_error" in logs
    assert "0101801234" not in logs
    assert "010180-1234" not in logs
