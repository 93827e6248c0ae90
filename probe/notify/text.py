"""What a message says, in Danish and English: a short title and a few lines of Markdown.

    >>> down = state_message(config, change, flow="gs-adt", destination="labka", lang="en",
    ...                      now=now)                                    # doctest: +SKIP
    >>> down.title
    'DOWN: Labka (lab)'
    >>> print(down.body)
    **Patient data from GS → Labka (lab)** is down since 14:05 (Europe/Copenhagen).
    <BLANKLINE>
    Cause: lost: not seen by the deadline.
    <BLANKLINE>
    [Status page](https://drift.example.org/probe/)

Names are the ``display:`` names in the channel's language (else the flow and destination
names), times are in the config's ``timezone`` (a date is added when it is not today), and
the link to the status page is there when ``server.public_url`` is set. Messages are
rendered when they are queued, so the outbox holds exactly what is sent.

The outcome words are this module's own: the report's (`probe.report.render.i18n`) sit in
the same layer as `probe.notify`, which may not import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

from probe.config.models import Config
from probe.config.people import Event, Lang, display_name
from probe.notify.state import Change
from probe.store.notices import Notice

NoticeChange = Literal["opened", "updated", "resolved"]

# Per outcome: (Danish, English), each "word: what it means".
_CAUSES: Final[dict[str, tuple[str, str]]] = {
    "delivered": ("leveret", "delivered"),
    "late": ("forsinket: set efter SLO-tiden", "late: seen after the SLO latency"),
    "lost": ("tabt: ikke set inden fristen", "lost: not seen by the deadline"),
    "send_error": (
        "afsendelsesfejl: kilden afviste beskeden eller kunne ikke nås",
        "send error: the source refused the message or could not be reached",
    ),
    "observe_error": (
        "observationsfejl: destinationen kunne ikke læses",
        "observation error: the destination could not be read",
    ),
}
# Per notice state: (Danish, English).
_STATES: Final[dict[str, tuple[str, str]]] = {
    "investigating": ("undersøges", "investigating"),
    "identified": ("årsagen er fundet", "identified"),
    "monitoring": ("overvåges", "monitoring"),
    "resolved": ("løst", "resolved"),
    "active": ("aktiv", "active"),
    "ended": ("afsluttet", "ended"),
}
# key: (Danish, English). One table, so a missing translation shows side by side.
_TEXT: Final[dict[str, tuple[str, str]]] = {
    "down": ("NEDE: {pair}", "DOWN: {pair}"),
    "down_body": ("{who} er nede siden {since}.", "{who} is down since {since}."),
    "cause": ("Årsag: {cause}.", "Cause: {cause}."),
    "recovered": ("OPPE IGEN: {pair}", "RECOVERED: {pair}"),
    "recovered_body": (
        "{who} virker igen fra {at}, efter {duration} nede (siden {since}; årsag: {cause}).",
        "{who} is working again from {at}, after {duration} down (since {since}; cause: {cause}).",
    ),
    "reminder": ("STADIG NEDE: {pair}", "STILL DOWN: {pair}"),
    "reminder_body": (
        "{who} har været nede siden {since}, i {duration}.",
        "{who} has been down since {since}, for {duration}.",
    ),
    "maintenance_started": ("VEDLIGEHOLD: {flow}", "MAINTENANCE: {flow}"),
    "maintenance_started_body": (
        "Planlagt vedligehold «{window}» af {who} er begyndt: {start} til {end}. Imens "
        "sendes ingen fejlbeskeder om det.",
        "Planned maintenance “{window}” of {who} has begun: {start} to {end}. No failure "
        "messages are sent about it meanwhile.",
    ),
    "maintenance_ended": ("VEDLIGEHOLD SLUT: {flow}", "MAINTENANCE ENDED: {flow}"),
    "maintenance_ended_body": (
        "Planlagt vedligehold «{window}» af {who} er slut ({start} til {end}).",
        "Planned maintenance “{window}” of {who} has ended ({start} to {end}).",
    ),
    "incident_opened": ("HÆNDELSE: {title}", "INCIDENT: {title}"),
    "announcement_opened": ("MEDDELELSE: {title}", "ANNOUNCEMENT: {title}"),
    "incident_updated": ("OPDATERET: {title}", "UPDATE: {title}"),
    "announcement_updated": ("OPDATERET: {title}", "UPDATE: {title}"),
    "incident_resolved": ("LØST: {title}", "RESOLVED: {title}"),
    "announcement_resolved": ("AFSLUTTET: {title}", "ENDED: {title}"),
    "notice_state": ("Status: {state} ({at}).", "Status: {state} ({at})."),
    "affected": ("Berørt: {flows}.", "Affected: {flows}."),
    "all_flows": ("alle flows", "every flow"),
    "link": ("[Statusside]({url})", "[Status page]({url})"),
}
_UNITS: Final[dict[Lang, tuple[str, str, str, str]]] = {
    "da": ("d", "t", "min", "s"),
    "en": ("d", "h", "min", "s"),
}


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message: a one-line title (an e-mail's subject) and a Markdown body."""

    title: str
    body: str


def state_message(
    config: Config, change: Change, *, flow: str, destination: str, lang: Lang, now: datetime
) -> Message:
    """The message of a down, a recovery or a reminder of ``flow``/``destination``."""
    tz = ZoneInfo(config.timezone)
    who, pair = _who(config, flow, destination, lang)
    since = _when(change.since, tz, now)
    cause = _cause(change.cause, lang)
    if change.event is Event.DOWN:
        lines = [_t("down_body", lang, who=who, since=since), _t("cause", lang, cause=cause)]
    elif change.event is Event.RECOVERED:
        duration = _duration((change.at - change.since).total_seconds(), lang)
        at = _when(change.at, tz, now)
        short = cause.split(":")[0]
        lines = [
            _t("recovered_body", lang, who=who, at=at, duration=duration, since=since, cause=short)
        ]
    else:
        duration = _duration((now - change.since).total_seconds(), lang)
        lines = [
            _t("reminder_body", lang, who=who, since=since, duration=duration),
            _t("cause", lang, cause=cause),
        ]
    title = _t(change.event.value, lang, pair=pair)
    return Message(title, _body(config, lines, lang))


def maintenance_message(
    config: Config,
    *,
    event: Event,
    flow: str,
    window: str,
    start: datetime,
    end: datetime,
    lang: Lang,
) -> Message:
    """The message of a maintenance window that started or ended (``event``) for ``flow``."""
    tz = ZoneInfo(config.timezone)
    name = display_name(config.display, flow, lang)
    times = {"start": _when(start, tz, start, zone=False), "end": _when(end, tz, start)}
    body = _t(f"{event.value}_body", lang, window=window, who=f"**{name}**", **times)
    return Message(_t(event.value, lang, flow=name), _body(config, [body], lang))


def notice_message(
    config: Config, notice: Notice, change: NoticeChange, *, lang: Lang, now: datetime
) -> Message:
    """The message of a written incident or announcement opened, updated or resolved."""
    tz = ZoneInfo(config.timezone)
    last = notice.updates[-1] if notice.updates else None
    state = _STATES.get(notice.state, (notice.state, notice.state))[lang == "en"]
    at = _when(last.at if last is not None else notice.updated_at, tz, now)
    lines = [_t("notice_state", lang, state=state, at=at)]
    if last is not None and last.body:
        lines.append(last.body)
    if notice.flows:
        names = [display_name(config.display, f.name, lang) for f in config.flows]
        affected = [n for f, n in zip(config.flows, names, strict=True) if notice.affects(f.name)]
        flows = ", ".join(affected or notice.flows)
    else:
        flows = _t("all_flows", lang)
    lines.append(_t("affected", lang, flows=flows))
    title = _t(f"{notice.kind}_{change}", lang, title=notice.title)
    return Message(title, _body(config, lines, lang))


def cause_words(cause: str, lang: Lang) -> str:
    """An outcome in words (``lost``: "lost: not seen by the deadline"); unknown as given."""
    return _cause(cause, lang)


def _who(config: Config, flow: str, destination: str, lang: Lang) -> tuple[str, str]:
    """The pair in bold for the body ("**Flow → Destination**"), and its title name."""
    flow_name = display_name(config.display, flow, lang)
    if not destination:  # a check: the flow is the pair
        return f"**{flow_name}**", flow_name
    pair = display_name(config.display, f"{flow}/{destination}", lang)
    return f"**{flow_name} → {pair}**", pair


def _cause(cause: str, lang: Lang) -> str:
    words = _CAUSES.get(cause)
    return words[lang == "en"] if words is not None else cause


def _when(moment: datetime, tz: ZoneInfo, now: datetime, *, zone: bool = True) -> str:
    """``14:05 (Europe/Copenhagen)``; with the date when it is not ``now``'s local day."""
    local = moment.astimezone(tz)
    text = local.strftime("%H:%M")
    if local.date() != now.astimezone(tz).date():
        text = local.strftime("%Y-%m-%d %H:%M")
    return f"{text} ({tz.key})" if zone else text


def _duration(seconds: float, lang: Lang) -> str:
    """``45 s``, ``12 min``, ``1 h 5 min``, ``2 d 3 h`` (Danish: ``t`` for hours)."""
    day, hour, minute, second = _UNITS[lang]
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} {day} {hours} {hour}" if hours else f"{days} {day}"
    if hours:
        return f"{hours} {hour} {minutes} {minute}" if minutes else f"{hours} {hour}"
    return f"{minutes} {minute}" if minutes else f"{secs} {second}"


def _body(config: Config, lines: list[str], lang: Lang) -> str:
    url = config.server.public_url
    if url:
        lines = [*lines, _t("link", lang, url=url)]
    return "\n\n".join(lines)


def _t(key: str, lang: Lang, **values: str) -> str:
    danish, english = _TEXT[key]
    return (english if lang == "en" else danish).format(**values)
