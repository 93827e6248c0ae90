"""Notifications: the state machine, the texts, the outbox and delivery to real receivers.

The machine is tested as a pure function (a flapping flow, and Hypothesis: fed whole or
in parts, with maintenance and probe-side faults anywhere, it says the same); the
derivation on the real store (SQLite and PostgreSQL), fed through the incident
watermarks as the store's writer feeds them; the sender against an HTTP webhook on
loopback and an SMTP server in this process (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import structlog.testing
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from probe.config.models import Config
from probe.config.people import Event, NotifyDefaults
from probe.engine.supervise import Supervisor
from probe.logs import redactor
from probe.metrics.registry import Metrics
from probe.model import Outcome, Result, utcnow
from probe.notify import outbox
from probe.notify.derive import FIRST_LOOK, derive
from probe.notify.maintenance import edges
from probe.notify.queue import maintenance_messages, queue_notice
from probe.notify.sender import Sender, deliver, url_secrets
from probe.notify.service import Notifications
from probe.notify.state import Change, PairState, Point, feed, remind
from probe.notify.text import state_message
from probe.store import create_engine, incidents
from probe.store.notices import open_notice, resolve_notice
from probe.store.rows import derived_of, result_row
from probe.store.tables import notify_state, results
from probe.store.tables import outbox as outbox_table
from probe.web.listener import Listener
from tests.helpers import proxied_postgres, wait_for

T0 = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)  # 14:00 in Copenhagen
RULES = NotifyDefaults(failure_threshold=3, success_threshold=2, reminder_interval=0)
# b: bad, g: good (delivered), m: bad but in maintenance, f: a probe-side fault
FLAP = "bbbggbbgbbbbgbgg"
FLAP_CHANGES = [("down", 0, 2), ("recovered", 0, 4), ("down", 8, 10), ("recovered", 8, 15)]


def _point(
    index: int, token: str, *, base: datetime = T0, step: timedelta = timedelta(minutes=1)
) -> Point:
    slot = base + index * step
    outcome = "delivered" if token == "g" else "lost"
    return Point(slot, outcome, 60.0, token == "m", "internal" if token == "f" else None)


def _run(
    tokens: str, rules: NotifyDefaults = RULES, state: PairState | None = None
) -> list[Change]:
    state = state or PairState()
    found = [feed(state, _point(i, t), rules, now=T0) for i, t in enumerate(tokens)]
    return [c for c in found if c is not None]


def _index(moment: datetime) -> int:
    return int((moment - T0).total_seconds() // 60)


def _summary(changes: list[Change]) -> list[tuple[str, int, int]]:
    return [(c.event.value, _index(c.since), _index(c.at)) for c in changes]


# --- the machine ---------------------------------------------------------------------------


def test_a_flapping_flow_gives_exactly_the_expected_changes() -> None:
    changes = _run(FLAP)
    assert _summary(changes) == FLAP_CHANGES
    assert {c.cause for c in changes} == {"lost"}


def test_maintenance_and_probe_faults_neither_count_nor_break_a_run() -> None:
    # Two bad, then maintenance and a fault, then one bad: the third bad slot of the run.
    assert _summary(_run("bbmfbggg")) == [("down", 0, 4), ("recovered", 0, 6)]
    # A good run broken by neither either.
    assert _summary(_run("bbbgmfg")) == [("down", 0, 2), ("recovered", 0, 6)]
    # Maintenance alone never takes a pair down.
    assert _run("mmmmmmff") == []


def test_the_cause_is_the_first_bad_slot_of_the_run() -> None:
    state = PairState()
    points = [
        Point(T0, "send_error", 60.0, False),
        Point(T0 + timedelta(minutes=1), "lost", 60.0, False),
        Point(T0 + timedelta(minutes=2), "observe_error", 60.0, False),
    ]
    changes = [feed(state, p, RULES, now=T0) for p in points]
    assert changes[:2] == [None, None]
    assert changes[2] == Change(Event.DOWN, T0, "send_error", T0 + timedelta(minutes=2))
    assert (state.down, state.since, state.cause) == (True, T0, "send_error")


def test_reminders_follow_the_wall_clock_while_down() -> None:
    rules = NotifyDefaults(failure_threshold=1, success_threshold=1, reminder_interval=3600)
    state = PairState()
    assert feed(state, _point(0, "b"), rules, now=T0) is not None
    assert remind(state, rules, now=T0 + timedelta(minutes=59)) is None
    first = remind(state, rules, now=T0 + timedelta(minutes=60))
    assert first == Change(Event.REMINDER, T0, "lost", T0 + timedelta(hours=1), previous=T0)
    assert remind(state, rules, now=T0 + timedelta(minutes=61)) is None
    assert remind(state, rules, now=T0 + timedelta(minutes=120)) is not None
    assert feed(state, _point(3, "g"), rules, now=T0) is not None  # recovered: no more
    assert remind(state, rules, now=T0 + timedelta(hours=9)) is None
    off = rules.model_copy(update={"reminder_interval": 0.0})
    down = PairState(down=True, since=T0, cause="lost", reminded_at=T0)
    assert remind(down, off, now=T0 + timedelta(days=3)) is None


tokens = st.text(alphabet="bgmf", max_size=60)
rules_drawn = st.builds(
    NotifyDefaults,
    failure_threshold=st.integers(1, 4),
    success_threshold=st.integers(1, 3),
    reminder_interval=st.just(0.0),
)


@settings(deadline=None, max_examples=300, derandomize=True)
@given(tokens, rules_drawn, st.lists(st.integers(0, 60), max_size=5))
def test_fed_whole_or_in_parts_the_machine_says_the_same(
    seq: str, rules: NotifyDefaults, cuts: list[int]
) -> None:
    whole = _run(seq, rules)
    # In parts, the state round-tripping through its `notify_state` row between them, as
    # between two ticks or two daemons.
    parts: list[Change] = []
    row: dict[str, Any] = PairState().as_row()
    bounds = [0, *sorted(c for c in cuts if c <= len(seq)), len(seq)]
    for start, end in itertools.pairwise(bounds):
        state = PairState.from_row(row)
        for i in range(start, end):
            change = feed(state, _point(i, seq[i]), rules, now=T0)
            if change is not None:
                parts.append(change)
        row = state.as_row()
    assert parts == whole
    # Down and recovered alternate, starting with down.
    events = [c.event for c in whole]
    assert events == [Event.DOWN, Event.RECOVERED] * (len(events) // 2) + [Event.DOWN] * (
        len(events) % 2
    )
    # Muting: the same sequence with its maintenance and faults taken out changes the same.
    kept = [(i, t) for i, t in enumerate(seq) if t in "bg"]
    state = PairState()
    plain = [feed(state, _point(i, t), rules, now=T0) for i, t in kept]
    assert [c for c in plain if c is not None] == whole


# --- text ----------------------------------------------------------------------------------


def _config(**extra: Any) -> Config:
    http = "http://127.0.0.1:1"
    return Config.model_validate(
        {
            "timezone": "Europe/Copenhagen",
            "server": {"public_url": "https://drift.example.org/probe/"},
            "flows": [
                {
                    "name": "gs-adt",
                    "source": {"type": "http", "url": f"{http}/gs"},
                    "destinations": [
                        {"name": "labka", "type": "http", "url": f"{http}/l?id=${{probe_id}}",
                         "match": {"regex": "${probe_id}"}},
                    ],
                },
                {"name": "labka-api", "severity": "info", "source": {"type": "http", "url": http}},
            ],
            "display": {
                "gs-adt": {"da": "Patientdata fra GS", "en": "Patient data from GS"},
                "gs-adt/labka": {"da": "Labka (laboratorie)", "en": "Labka (lab)"},
            },
            **extra,
        }
    )  # fmt: skip


def test_down_message_in_danish_and_english() -> None:
    config = _config()
    change = Change(Event.DOWN, T0 + timedelta(minutes=5), "lost", T0 + timedelta(minutes=7))
    now = T0 + timedelta(minutes=8)
    da = state_message(config, change, flow="gs-adt", destination="labka", lang="da", now=now)
    en = state_message(config, change, flow="gs-adt", destination="labka", lang="en", now=now)
    assert da.title == "NEDE: Labka (laboratorie)"
    assert en.title == "DOWN: Labka (lab)"
    assert da.body == (
        "**Patientdata fra GS → Labka (laboratorie)** er nede siden 14:05 (Europe/Copenhagen)."
        "\n\nÅrsag: tabt: ikke set inden fristen.\n\n[Statusside](https://drift.example.org/probe/)"
    )
    assert en.body.startswith(
        "**Patient data from GS → Labka (lab)** is down since 14:05 (Europe/Copenhagen)."
    )
    assert "Cause: lost: not seen by the deadline." in en.body
    assert en.body.endswith("[Status page](https://drift.example.org/probe/)")


def test_recovery_and_reminder_say_how_long_and_a_check_is_named_by_its_flow() -> None:
    config = _config(server={})  # no public_url: no link
    since = T0 - timedelta(days=1)  # yesterday: with its date
    back = Change(Event.RECOVERED, since, "send_error", T0 + timedelta(minutes=12))
    en = state_message(config, back, flow="labka-api", destination="", lang="en", now=T0)
    assert en.title == "RECOVERED: labka-api"
    assert en.body == (
        "**labka-api** is working again from 14:12 (Europe/Copenhagen), after 1 d down "
        "(since 2026-11-30 14:00 (Europe/Copenhagen); cause: send error)."
    )
    again = Change(Event.REMINDER, T0, "observe_error", T0, previous=T0)
    later = T0 + timedelta(hours=2, minutes=10)
    da = state_message(config, again, flow="gs-adt", destination="labka", lang="da", now=later)
    assert da.title == "STADIG NEDE: Labka (laboratorie)"
    assert "har været nede siden 14:00 (Europe/Copenhagen), i 2 t 10 min." in da.body
    assert "observationsfejl" in da.body
    assert "Statusside" not in da.body


# --- the store -----------------------------------------------------------------------------


def _channels(**first: Any) -> list[dict[str, Any]]:
    return [
        {"name": "drift", "url": "json://127.0.0.1:1/hook", "lang": "da", **first},
        {"name": "ledelse", "url": "json://127.0.0.1:1/other", "events": ["down"]},
        {"name": "info-only", "url": "json://127.0.0.1:1/x", "severities": ["info"]},
    ]


def _notify_config(*, maintenance: Any = (), **notify: Any) -> Config:
    defaults = {"failure_threshold": 3, "success_threshold": 2, "reminder_interval": 0}
    return _config(
        notify={"defaults": defaults, "channels": _channels(), **notify},
        maintenance=list(maintenance),
    )


async def _write(
    engine: AsyncEngine, tokens: str, *, base: datetime, first: int = 0, dest: str = "labka"
) -> None:
    """Results for gs-adt/``dest``, one every `STEP` from ``base``, written and fed to the
    incident watermarks the way the store's writer does."""
    found = []
    for i, token in enumerate(tokens, start=first):
        p = _point(i, token, base=base, step=STEP)
        found.append(
            Result(
                probe_id=f"PR{int(p.slot.timestamp() * 1000):011X}{i:07X}",
                flow="gs-adt", destination=dest,
                outcome=Outcome(p.outcome), latency=0.1, latency_clock="monotonic",
                duplicates=0, reason=p.reason, slot=p.slot, resolved_at=p.slot,
                maintenance=p.maintenance, span=STEP.total_seconds(),
            )
        )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(results), [result_row(r) for r in found])
        await incidents.advance(conn, [derived_of(r) for r in found], now=utcnow())


STEP = timedelta(seconds=20)  # between two slots in the store tests


async def _outbox(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        query = select(outbox_table).order_by(outbox_table.c.id)
        return list((await conn.execute(query)).fetchall())


@asynccontextmanager
async def _engine(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_flapping_flow_queues_exactly_the_expected_messages(store_url: str) -> None:
    config = _notify_config()
    base = utcnow() - STEP * (len(FLAP) + 1)  # within the first look
    async with _engine(store_url) as engine:
        queued = 0
        for start, end in ((0, 3), (3, 9), (9, 16)):  # three ticks, each sees a part
            await _write(engine, FLAP[start:end], base=base, first=start)
            queued += await derive(engine, config, now=utcnow())
        rows = await _outbox(engine)
        assert queued == len(rows) == 6  # drift: all four; ledelse: the two downs
        drift = [r for r in rows if r.channel == "drift"]
        assert [r.event for r in drift] == ["down", "recovered", "down", "recovered"]
        assert all(r.title.endswith("Labka (laboratorie)") for r in drift)
        assert [r.title for r in rows if r.channel == "ledelse"] == ["DOWN: Labka (lab)"] * 2
        # Nothing more to say: a tick with no new results, and a second daemon's.
        assert await derive(engine, config, now=utcnow()) == 0
        async with engine.connect() as conn:
            state = (await conn.execute(select(notify_state))).one()
        assert (state.down, state.slot_at) == (False, base + 15 * STEP)


async def test_two_daemons_queue_each_message_once(store_url: str) -> None:
    config = _notify_config()
    base = utcnow() - STEP * 10
    async with _engine(store_url) as one, _engine(store_url) as two:
        await _write(one, "bbbbgg", base=base)
        counts = await asyncio.gather(*(derive(e, config, now=utcnow()) for e in (one, two)))
        rows = await _outbox(one)
    assert sum(counts) == len(rows) == 3  # drift: down and recovered; ledelse: down
    assert sorted(counts) == [0, 3]  # one daemon queued them all, the other none


async def test_history_before_the_first_look_is_not_told(store_url: str) -> None:
    config = _notify_config()
    now = utcnow()
    async with _engine(store_url) as engine:
        # Down for an hour, long before notifications were switched on; the last two
        # results are recent, and bad: not yet three in a row since the first look.
        await _write(engine, "b" * 60, base=now - timedelta(hours=3))
        await _write(engine, "bb", base=now - FIRST_LOOK + timedelta(minutes=1))
        assert await derive(engine, config, now=now) == 0
        await _write(engine, "b", base=now - timedelta(minutes=1))
        assert await derive(engine, config, now=utcnow()) == 2  # now: drift and ledelse
        rows = await _outbox(engine)
    assert [(r.channel, r.event) for r in rows] == [("drift", "down"), ("ledelse", "down")]


async def test_maintenance_windows_start_and_end_once(store_url: str) -> None:
    now = utcnow().replace(microsecond=0)
    window = {
        "name": "patch",
        "flows": ["gs-*"],
        "once": {"start": (now - timedelta(minutes=5)).isoformat(), "duration": "30m"},
    }
    started = _channels(events=["maintenance_started"])
    config = _notify_config(channels=started, maintenance=[window])
    found = edges(config, now=now)
    assert [(e.event, e.flow) for e in found] == [(Event.MAINTENANCE_STARTED, "gs-adt")]
    messages = maintenance_messages(config, found)
    # drift wants only the start; ledelse only downs; info-only is for info flows.
    assert [(m.channel, m.message.title) for m in messages] == [
        ("drift", "VEDLIGEHOLD: Patientdata fra GS")
    ]
    async with _engine(store_url) as engine:
        for _ in range(2):  # a second tick, a restart, another daemon: the same key
            async with engine.begin() as conn:
                await outbox.queue(conn, messages, now=now)
        assert len(await _outbox(engine)) == 1
    later = edges(config, now=now + timedelta(minutes=26))
    assert [e.event for e in later] == [Event.MAINTENANCE_ENDED]
    assert edges(config, now=now + timedelta(hours=2)) == []  # long over: nothing late


async def test_written_incidents_are_queued_per_change(store_url: str) -> None:
    config = _notify_config()
    now = utcnow()
    async with _engine(store_url) as engine:
        async with engine.begin() as conn:
            notice = await open_notice(conn, kind="incident", title="Labka modtager intet",
                                       flows=["gs-*"], body="Vi undersøger.", now=now)  # fmt: skip
            first = await queue_notice(conn, config, notice, "opened", now=now)
            again = await queue_notice(conn, config, notice, "opened", now=now)
            done = await resolve_notice(conn, notice.id, body="Genstartet.", now=now)
            last = await queue_notice(conn, config, done, "resolved", now=now)
        rows = await _outbox(engine)
    # drift hears of it (gs-adt is critical), ledelse wants only downs, info-only only
    # info flows, which the notice does not affect.
    assert (first, again, last) == (1, 0, 1)
    assert [r.title for r in rows] == [
        "HÆNDELSE: Labka modtager intet",
        "LØST: Labka modtager intet",
    ]
    assert "Vi undersøger." in rows[0].body
    assert "Status: løst" in rows[1].body
    assert "Genstartet." in rows[1].body
    assert "Berørt: Patientdata fra GS." in rows[1].body


# --- delivery ------------------------------------------------------------------------------

TOKEN = "s3cr3t-t0ken-0123456789"  # the secret part of a webhook's URL


class Webhook:
    """An HTTP receiver on loopback that keeps the JSON of every POST to /hook/{token}."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.on_post: Callable[[], Awaitable[None]] | None = None  # before it answers
        app = Starlette(routes=[Route("/hook/{token}", self._post, methods=["POST"])])
        self.listener = Listener("hook", app, host="127.0.0.1", port=0)

    async def _post(self, request: Request) -> Response:
        if request.path_params["token"] != TOKEN:
            return Response(status_code=403)
        self.posts.append(await request.json())
        if self.on_post is not None:
            await self.on_post()
        return Response(status_code=200)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.listener.port}/hook/{TOKEN}"

    @property
    def titles(self) -> list[str]:
        return [p["title"] for p in self.posts]


@asynccontextmanager
async def webhook(*, listening: bool = True) -> AsyncIterator[Webhook]:
    hook = Webhook()
    await hook.listener.start(listening=listening)
    try:
        yield hook
    finally:
        await hook.listener.stop()


class Mailbox:
    """What an SMTP server in this process received."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[email.message.EmailMessage]:
        parse = email.message_from_bytes
        return [parse(e.content, policy=email.policy.default) for e in self.envelopes]  # type: ignore[misc]


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    # aiosmtpd's Controller checks its port by connecting to it, so it needs a real one
    # up front: one the OS gave out a moment ago.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _sending_config(url: str, **channel: Any) -> Config:
    defaults = {"failure_threshold": 3, "success_threshold": 2, "reminder_interval": 0}
    chan = {"name": "drift", "url": url, "lang": "en", **channel}
    return _config(notify={"defaults": defaults, "channels": [chan]})


async def _send_until(sender: Sender, done: Any, *, limit: float = 30) -> None:
    async def step() -> bool:
        await sender.run_once()
        return bool(done())

    await wait_for(step, limit=limit, every=0.05)


async def test_the_webhook_gets_the_down_and_the_recovery(store_url: str) -> None:
    metrics = Metrics({})
    async with webhook() as hook, _engine(store_url) as engine:
        config = _sending_config(hook.url)
        await _write(engine, "bbbgg", base=utcnow() - STEP * 6)
        assert await derive(engine, config, now=utcnow()) == 2
        sender = Sender(engine, lambda: config, count=metrics.notified)
        await _send_until(sender, lambda: len(hook.posts) == 2)
        assert await sender.run_once() == 0  # nothing twice
        rows = await _outbox(engine)
    assert hook.titles == ["DOWN: Labka (lab)", "RECOVERED: Labka (lab)"]
    assert "is down since" in hook.posts[0]["message"]
    assert hook.posts[0]["type"] == "info"
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows)
    sent = metrics.registry.get_sample_value(
        "probe_notifications_total", {"channel": "drift", "outcome": "sent"}
    )
    assert sent == 2


async def test_a_flapping_flow_sends_exactly_four_messages(store_url: str) -> None:
    async with webhook() as hook, _engine(store_url) as engine:
        config = _sending_config(hook.url)
        sender = Sender(engine, lambda: config, count=Metrics({}).notified)
        base = utcnow() - STEP * (len(FLAP) + 1)
        for i, token in enumerate(FLAP):  # a tick and a look of the sender after each slot
            await _write(engine, token, base=base, first=i)
            await derive(engine, config, now=utcnow())
            await sender.run_once()
        await _send_until(sender, lambda: len(hook.posts) >= 4)
        assert await sender.run_once() == 0
    assert hook.titles == ["DOWN: Labka (lab)", "RECOVERED: Labka (lab)"] * 2


async def test_the_smtp_server_gets_the_down_and_the_recovery_mails(store_url: str) -> None:
    with smtp_server() as (box, port):
        url = f"mailto://127.0.0.1:{port}?from=probe@example.org&to=ops@example.org&mode=insecure"
        config = _sending_config(url, lang="da")
        async with _engine(store_url) as engine:
            await _write(engine, "bbbgg", base=utcnow() - STEP * 6)
            await derive(engine, config, now=utcnow())
            sender = Sender(engine, lambda: config, count=Metrics({}).notified)
            await _send_until(sender, lambda: len(box.envelopes) == 2)
        mails = box.messages()
    assert [m["Subject"] for m in mails] == [
        "NEDE: Labka (laboratorie)",
        "OPPE IGEN: Labka (laboratorie)",
    ]
    assert all(e.rcpt_tos == ["ops@example.org"] for e in box.envelopes)
    assert all(e.mail_from == "probe@example.org" for e in box.envelopes)
    text = mails[0].get_body(preferencelist=("plain",))
    assert text is not None
    assert "er nede siden" in text.get_content()
    html = mails[1].get_body(preferencelist=("html",))
    assert html is not None
    assert "<strong>Patientdata fra GS → Labka (laboratorie)</strong>" in html.get_content()


async def test_a_receiver_that_was_down_gets_every_message_in_order_once(store_url: str) -> None:
    metrics = Metrics({})
    async with webhook(listening=False) as hook, _engine(store_url) as engine:
        config = _sending_config(hook.url)
        await _write(engine, "bbbggbbbgg", base=utcnow() - STEP * 11)
        assert await derive(engine, config, now=utcnow()) == 4
        sender = Sender(engine, lambda: config, count=metrics.notified, backoff=lambda n: 0.05)

        async def failed_twice() -> bool:
            await sender.run_once()
            return (await _outbox(engine))[0].attempts >= 2

        await wait_for(failed_twice, limit=30, every=0.05)
        rows = await _outbox(engine)
        assert all(r.sent_at is None for r in rows)
        assert [r.attempts for r in rows[1:]] == [0, 0, 0]  # they waited for the first
        assert rows[0].last_error == (
            "FAILURE: A Connection error occurred sending JSON notification to 127.0.0.1."
        )
        await hook.listener.resume()
        await _send_until(sender, lambda: len(hook.posts) == 4)
        for _ in range(3):
            await sender.run_once()
    assert hook.titles == ["DOWN: Labka (lab)", "RECOVERED: Labka (lab)"] * 2
    failed = metrics.registry.get_sample_value(
        "probe_notifications_total", {"channel": "drift", "outcome": "failed"}
    )
    assert failed is not None
    assert failed >= 2


async def test_messages_of_a_removed_channel_are_dropped(store_url: str) -> None:
    metrics = Metrics({})
    async with _engine(store_url) as engine:
        config = _sending_config("json://127.0.0.1:1/hook")
        await _write(engine, "bbb", base=utcnow() - STEP * 4)
        assert await derive(engine, config, now=utcnow()) == 1
        other = _sending_config("json://127.0.0.1:1/hook", name="another")
        assert await Sender(engine, lambda: other, count=metrics.notified).run_once() == 0
        assert await _outbox(engine) == []
    dropped = metrics.registry.get_sample_value(
        "probe_notifications_total", {"channel": "drift", "outcome": "dropped"}
    )
    assert dropped == 1


async def test_a_bad_url_fails_with_a_clear_error_and_no_secret() -> None:
    assert await deliver("nonsense://" + TOKEN, "t", "b") == (
        "not a valid Apprise URL (see the Apprise documentation for its scheme)"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = await deliver(f"json://user:{TOKEN}@127.0.0.1:{port}/x/{TOKEN}", "t", "b")
    assert error is not None
    assert error.startswith("FAILURE: ")
    assert TOKEN not in error


def test_url_secrets_cover_tokens_and_passwords() -> None:
    url = "mailtos://probe:hunter22@smtp.example.org?to=ops@example.org"
    assert {"hunter22", "probe:hunter22", url} <= set(url_secrets(url))
    slack = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops"
    assert {"T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"} <= set(url_secrets(slack))
    assert "hook" not in url_secrets("json://127.0.0.1/hook")  # a word, not a token
    workflow = (
        "https://prod-161.westeurope.logic.azure.com:443/workflows/643e69f83c8944438d68119179a"
        "10a64/triggers/manual/paths/invoke?api-version=2016-06-01&sv=1.0&sig=KODuebWbDGYFr0z0"
        "eu-6Rj8aUKz7108W3wrNJZxFE5A"
    )
    parts = set(url_secrets(workflow))
    assert {
        "643e69f83c8944438d68119179a10a64",
        "KODuebWbDGYFr0z0eu-6Rj8aUKz7108W3wrNJZxFE5A",
    } <= parts
    assert not {"workflows", "triggers", "manual", "invoke"} & parts


def test_backoff_doubles_from_5_seconds_to_10_minutes() -> None:
    assert [outbox.backoff(n) for n in range(1, 10)] == [
        5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0,
    ]  # fmt: skip


# --- the daemon's tasks --------------------------------------------------------------------


async def test_the_tasks_start_with_the_first_channel_and_ride_out_a_store_outage(
    postgres_url: str,
) -> None:
    proxy, url = await proxied_postgres(postgres_url)
    supervisor = Supervisor()
    async with webhook() as hook, _engine(url) as engine:
        current = [_config()]  # no channel yet
        notify = Notifications(lambda: current[0], supervisor.spawn, Metrics({}))
        try:
            assert notify.start(engine) == []
            current[0] = _sending_config(hook.url)  # a reload brings the first channel
            assert [t.get_name() for t in notify.apply()] == ["notify", "notify-send"]
            assert notify.apply() == []  # already running
            assert redactor.redact(f"posting to {hook.url}") == "posting to ***"
            with structlog.testing.capture_logs() as logs:
                await _write(engine, "bbb", base=utcnow() - STEP * 4)
                await wait_for(lambda: hook.titles == ["DOWN: Labka (lab)"], limit=30)
                await proxy.cut()  # perhaps before the send was marked: it is, once back

                def reported(event: str) -> set[str]:
                    return {e["task"] for e in logs if e["event"] == event}

                both = {"notify", "notify-send"}
                await wait_for(lambda: reported("notify_store_unreachable") == both, limit=30)
                await proxy.start()
                await wait_for(lambda: reported("notify_store_back") == both, limit=30)
                await _write(engine, "gg", base=utcnow() - STEP * 2, first=3)
                await wait_for(lambda: len(hook.posts) == 2, limit=30)
            unreachable = [e for e in logs if e["event"] == "notify_store_unreachable"]
            assert len(unreachable) == 2  # once per task and outage, not once a second
            assert hook.titles == ["DOWN: Labka (lab)", "RECOVERED: Labka (lab)"]
            assert not supervisor.failed
        finally:
            await supervisor.aclose()
            await proxy.close()


async def test_a_send_the_store_could_not_mark_is_marked_later_not_sent_again(
    postgres_url: str,
) -> None:
    proxy, url = await proxied_postgres(postgres_url)
    metrics = Metrics({})
    try:
        async with webhook() as hook, _engine(url) as engine:
            config = _sending_config(hook.url)
            await _write(engine, "bbb", base=utcnow() - STEP * 4)
            assert await derive(engine, config, now=utcnow()) == 1
            hook.on_post = proxy.cut  # the store goes away while the receiver takes it
            sender = Sender(engine, lambda: config, count=metrics.notified)
            with pytest.raises(SQLAlchemyError):
                await sender.run_once()
            assert len(hook.posts) == 1
            hook.on_post = None
            await proxy.start()
            assert await sender.run_once() == 0  # marked now; nothing (again) to send
            (row,) = await _outbox(engine)
    finally:
        await proxy.close()
    assert row.sent_at is not None
    assert row.attempts == 1
    assert len(hook.posts) == 1
    sent = metrics.registry.get_sample_value(
        "probe_notifications_total", {"channel": "drift", "outcome": "sent"}
    )
    assert sent == 1


async def test_the_daemon_tells_a_maintenance_start_once_across_a_restart(store_url: str) -> None:
    now = utcnow().replace(microsecond=0)
    window = {
        "name": "patch",
        "flows": ["gs-*"],
        "once": {"start": (now - timedelta(minutes=2)).isoformat(), "duration": "1h"},
    }
    async with webhook() as hook, _engine(store_url) as engine:
        config = _sending_config(hook.url, events=["maintenance_started"])
        config = _config(notify=config.notify.model_dump(), maintenance=[window])

        async def state() -> Any:
            async with engine.connect() as conn:
                return (await conn.execute(select(notify_state))).first()

        for run in range(2):  # a daemon, and the next one on the same store
            supervisor = Supervisor()
            notify = Notifications(lambda: config, supervisor.spawn, Metrics({}))
            try:
                assert len(notify.start(engine)) == 2
                # Two ticks that each read a new result: the first of them ran whole,
                # its maintenance part included, before the second began.
                for i in (2 * run, 2 * run + 1):
                    seen = row.slot_at if (row := await state()) is not None else None
                    await _write(engine, "g", base=utcnow() - STEP * 5, first=i)
                    await wait_for(partial(_moved, state, seen), limit=30)
                await wait_for(lambda: len(hook.posts) == 1, limit=30)
            finally:
                await supervisor.aclose()
        assert len(await _outbox(engine)) == 1
    assert hook.titles == ["MAINTENANCE: Patient data from GS"]
    assert "“patch”" in hook.posts[0]["message"]


async def _moved(state: Any, seen: datetime | None) -> bool:
    row = await state()
    return row is not None and (seen is None or bool(row.slot_at > seen))
