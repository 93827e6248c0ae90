"""The sans-IO MLLP frame reader: whole frames out of any byte stream, and never an error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probe.errors import ProtocolError
from probe.transports.mllp import hl7v2
from probe.transports.mllp.framing import END, START, FrameReader, frame


def _feed_in_pieces(reader: FrameReader, data: bytes, sizes: list[int]) -> list[bytes]:
    frames, pos = [], 0
    for size in sizes:
        frames += reader.feed(data[pos : pos + size])
        pos += size
    return frames + reader.feed(data[pos:])


@pytest.mark.parametrize(
    ("data", "frames", "junk"),
    [
        pytest.param(frame(b"MSH|a"), [b"MSH|a"], 0, id="one"),
        pytest.param(frame(b"a") + frame(b"b") + frame(b"c"), [b"a", b"b", b"c"], 0, id="three"),
        pytest.param(b"noise" + frame(b"a") + b"\r\n" + frame(b"b"), [b"a", b"b"], 7, id="junk"),
        pytest.param(b"MSH|no start" + END + frame(b"ok"), [b"ok"], 14, id="missing-start"),
        pytest.param(START + b"cut" + frame(b"ok"), [b"ok"], 4, id="restart-inside-frame"),
        pytest.param(frame(b""), [b""], 0, id="empty"),
        pytest.param(frame(b"a\x1cb"), [b"a\x1cb"], 0, id="lone-0x1c-inside"),
    ],
)
def test_frames_and_junk(data: bytes, frames: list[bytes], junk: int) -> None:
    reader = FrameReader()
    assert reader.feed(data) == frames
    assert reader.junk == junk
    # The same bytes one at a time give the same frames.
    one_by_one = FrameReader()
    assert _feed_in_pieces(one_by_one, data, [1] * len(data)) == frames
    assert one_by_one.junk == junk


def test_partial_frame_is_kept_until_its_end() -> None:
    reader = FrameReader()
    assert reader.feed(START + b"MSH|half") == []
    assert reader.partial
    assert reader.feed(b"|rest\x1c") == []
    assert reader.feed(b"\x0d") == [b"MSH|half|rest"]
    assert not reader.partial


def test_oversized_frame_is_dropped_and_the_next_one_kept() -> None:
    reader = FrameReader(max_size=1000)
    data = frame(b"x" * 5000) + frame(b"ok")
    assert _feed_in_pieces(reader, data, [300] * 20) == [b"ok"]
    assert reader.oversized == 1


def test_a_megabyte_message_in_64k_reads() -> None:
    payload = b"OBX|" + b"A" * 1_048_576
    reader = FrameReader()
    data = frame(payload)
    assert _feed_in_pieces(reader, data, [65536] * (len(data) // 65536)) == [payload]


@given(
    noise=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=30),
)
def test_any_bytes_then_a_good_frame_yields_that_frame(noise: bytes, cuts: list[int]) -> None:
    """Whatever came before, a fresh START resets the reader and the next frame is whole."""
    reader = FrameReader()
    reader.feed(noise)
    good = b"MSH|^~\\&|GOOD"
    frames = _feed_in_pieces(reader, frame(good), cuts)
    assert frames[-1:] == [good]


@given(payloads=st.lists(st.binary().filter(lambda b: START not in b and END not in b), max_size=8))
def test_well_formed_stream_round_trips(payloads: list[bytes]) -> None:
    reader = FrameReader()
    assert reader.feed(b"".join(frame(p) for p in payloads)) == payloads
    assert reader.junk == 0


def test_build_puts_the_id_in_msh10_and_the_survivor_field() -> None:
    sent_at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for template, field in (("adt_a08", "PID-3"), ("orm_o01", "ORC-2"), ("adt_a08", "NTE-3")):
        text = hl7v2.build(
            hl7v2.TEMPLATES[template], probe_id="PR0123456789ABCDEF01", id_field=field,
            header=hl7v2.Header(processing_id="P"), patient_id="6504611234",
            patient_name="Testperson^Åse", encoding="latin-1", sent_at=sent_at,
        )  # fmt: skip
        message = hl7v2.parse(text)
        assert hl7v2.field_text(message, "MSH-10") == "PR0123456789ABCDEF01"
        assert "PR0123456789ABCDEF01" in hl7v2.field_text(message, field)
        assert hl7v2.field_text(message, "PID-5") == "Testperson^Åse"
        assert hl7v2.field_text(message, "MSH-11") == "P"
        assert text.endswith("\r")
        assert not text.endswith("\r\r")
    pid3 = hl7v2.field_text(hl7v2.parse(text), "PID-3")
    assert pid3.startswith("6504611234^^^CPR")  # the test patient keeps its identifier


@pytest.mark.parametrize("text", ["", "PID|1", "garbage", "MSH"])
def test_parse_refuses_what_is_not_hl7(text: str) -> None:
    with pytest.raises(ProtocolError):
        hl7v2.parse(text)
