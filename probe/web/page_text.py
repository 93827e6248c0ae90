"""The words of the status page and its history page, in English and Danish.

    >>> t("down_since", "da", time="7. okt. 2026 02:14")
    'siden 7. okt. 2026 02:14'

One table, so a missing translation shows side by side; `t` raises `KeyError` on a typo
rather than print half a page in the wrong language. The page's script gets the words it
needs from the page itself (`probe.web.page_parts.script_data`), so it has no words of its
own.
"""

from __future__ import annotations

from typing import Final

from probe.report.render.i18n import Lang

# key: (English, Danish)
LABELS: Final[dict[str, tuple[str, str]]] = {
    "title": ("Integration status", "Integrationsstatus"),
    "history_title": ("Integration history", "Integrationshistorik"),
    "updated": ("Updated {time}", "Opdateret {time}"),
    "refresh": (
        "Times in {tz}. This page updates itself when something changes (every 30 seconds "
        "without JavaScript).",
        "Tider i {tz}. Siden opdaterer sig selv, når noget ændrer sig (hvert 30. sekund uden "
        "JavaScript).",
    ),
    "times_in": ("Times in {tz}.", "Tider i {tz}."),
    "languages": ("Language", "Sprog"),
    "links": ("More", "Mere"),
    "ok": ("Working", "Kører"),
    "degraded": ("Degraded", "Forringet"),
    "down": ("Down", "Nede"),
    "down_since": ("since {time}", "siden {time}"),
    "maintenance": ("Maintenance", "Vedligehold"),
    "unknown": ("Unknown", "Ukendt"),
    "overall_ok": ("All integrations are working", "Alle integrationer kører"),
    "overall_degraded": ("Some integrations are degraded", "Nogle integrationer kører forringet"),
    "overall_down": ("One or more integrations are down", "En eller flere integrationer er nede"),
    "overall_unknown": (
        "The state of some integrations is unknown",
        "Nogle integrationers tilstand er ukendt",
    ),
    "overall_none": ("No integrations are configured", "Ingen integrationer er sat op"),
    "overall_maintenance": ("Planned maintenance in progress", "Planlagt vedligehold i gang"),
    "destination": ("Destination", "Destination"),
    "check": ("(check)", "(tjek)"),
    "state": ("Status", "Status"),
    "bars": ("Last 24 hours and 90 days", "Seneste 24 timer og 90 dage"),
    "h1": ("1 hour", "1 time"),
    "h24": ("24 hours", "24 timer"),
    "d30": ("30 days", "30 dage"),
    "last_probe": ("Last probe", "Seneste måling"),
    "never": ("No probe yet", "Ingen måling endnu"),
    "maintenance_now": (
        "Planned maintenance \u201c{name}\u201d until {until}.",
        "Planlagt vedligehold \u201c{name}\u201d til {until}.",
    ),
    "maintenance_next": (
        "Next planned maintenance: \u201c{name}\u201d {start} {dash} {end}.",
        "Næste planlagte vedligehold: \u201c{name}\u201d {start} {dash} {end}.",
    ),
    "cell": (
        "{start}: {share} of {count} probes delivered",
        "{start}: {share} af {count} målinger leveret",
    ),
    "cell_none": ("{start}: no data", "{start}: ingen data"),
    "cell_maintenance": ("{start}: maintenance", "{start}: vedligehold"),
    "day_none": ("{start}: not measured", "{start}: ikke målt"),
    "bar24": (
        "Last 24 hours: {measured} of 24 hours measured, {bad} with problems",
        "Seneste 24 timer: {measured} af 24 timer målt, {bad} med problemer",
    ),
    "bar90": (
        "Last 90 days: {measured} of 90 days measured, {bad} with problems",
        "Seneste 90 dage: {measured} af 90 dage målt, {bad} med problemer",
    ),
    "ago24": ("24 h ago", "for 24 t siden"),
    "ago90": ("90 days ago", "for 90 dage siden"),
    "now": ("now", "nu"),
    "today": ("today", "i dag"),
    "legend": (
        "Working: the recent test messages all arrived in time. Degraded: some arrived late "
        "or went missing. Down: the last three did not arrive. Maintenance: planned downtime. "
        "Unknown: no recent measurement. The upper bar has one cell per hour, the lower one "
        "per day: green when the messages arrived in time, amber when some were late or "
        "missing, red when more than one in ten did not arrive, grey when nothing was "
        "measured (not 0 %).",
        "Kører: de seneste testbeskeder kom alle frem til tiden. Forringet: nogle kom for sent "
        "eller forsvandt. Nede: de sidste tre kom ikke frem. Vedligehold: planlagt nedetid. "
        "Ukendt: ingen nye målinger. Den øverste bjælke har én celle pr. time, den nederste "
        "én pr. dag: grøn når beskederne kom frem til tiden, gul når nogle var forsinkede "
        "eller manglede, rød når mere end hver tiende ikke kom frem, grå når intet blev målt "
        "(ikke 0 %).",
    ),
    "unavailable": (
        "The status cannot be read right now: the probe's database does not answer.",
        "Status kan ikke læses lige nu: måledatabasen svarer ikke.",
    ),
    # Written incidents and announcements
    "notices": ("Incidents and announcements", "Driftsforstyrrelser og meddelelser"),
    "incident": ("Incident", "Driftsforstyrrelse"),
    "announcement": ("Announcement", "Meddelelse"),
    "planned": ("Planned maintenance", "Planlagt vedligehold"),
    "investigating": ("Investigating", "Undersøges"),
    "identified": ("Identified", "Årsag fundet"),
    "monitoring": ("Monitoring", "Overvåges"),
    "resolved": ("Resolved", "Løst"),
    "active": ("Active", "Aktiv"),
    "ended": ("Ended", "Afsluttet"),
    "upcoming": ("Upcoming", "Kommende"),
    "in_progress": ("In progress", "I gang"),
    "affects": ("Affects: {flows}", "Berører: {flows}"),
    "affects_all": ("Affects every integration", "Berører alle integrationer"),
    "opened": ("Opened {time}", "Oprettet {time}"),
    "last_update": ("last update {time}", "seneste opdatering {time}"),
    "span": ("{start} {dash} {end}", "{start} {dash} {end}"),
    "from": ("From {time}", "Fra {time}"),
    "until": ("Until {time}", "Indtil {time}"),
    "timeline": ("Updates, newest first", "Opdateringer, nyeste først"),
    "flow_incident": ("Incident: {title} ({state})", "Driftsforstyrrelse: {title} ({state})"),
    # Pop-ups (the script shows this part; without JavaScript it stays hidden)
    "follow": ("Follow", "Følg"),
    "popups_intro": (
        "Pop-ups: follow an integration to be told on this computer when it changes state.",
        "Pop-op-beskeder: følg en integration for at få besked på denne computer, når dens "
        "tilstand ændrer sig.",
    ),
    "popups_allow": ("Allow pop-ups", "Tillad pop-op-beskeder"),
    "popups_on": (
        "Pop-ups are on for the integrations you follow.",
        "Pop-op-beskeder er slået til for de integrationer, du følger.",
    ),
    "popups_off": ("Pop-ups are not allowed yet.", "Pop-op-beskeder er ikke tilladt endnu."),
    "popups_blocked": (
        "Pop-ups are blocked in this browser's settings.",
        "Pop-op-beskeder er blokeret i browserens indstillinger.",
    ),
    "popups_unsupported": (
        "This browser cannot show pop-ups.",
        "Denne browser kan ikke vise pop-op-beskeder.",
    ),
    "notify_title": ("{name} changed state", "{name} har skiftet tilstand"),
    # History and the report
    "history": ("History of the last 90 days", "Historik for de seneste 90 dage"),
    "back": ("Current status", "Aktuel status"),
    "report": ("Monthly report", "Månedsrapport"),
    "so_far": ("{month} (so far)", "{month} (indtil nu)"),
    "history_notices": (
        "Incidents and announcements, last 90 days",
        "Driftsforstyrrelser og meddelelser, seneste 90 dage",
    ),
    "history_none": ("None in the last 90 days.", "Ingen de seneste 90 dage."),
    "history_auto": (
        "Detected incidents, last 90 days",
        "Registrerede hændelser, seneste 90 dage",
    ),
    "history_auto_intro": (
        "Found by the probe itself: a run of test messages that did not arrive in time, per "
        "integration and destination, newest first.",
        "Fundet af måleren selv: en række testbeskeder, der ikke kom frem til tiden, pr. "
        "integration og destination, nyeste først.",
    ),
    "ongoing": ("ongoing", "igangværende"),
    "more_incidents": (
        "{count} older incidents are not shown.",
        "{count} ældre hændelser vises ikke.",
    ),
}


def t(key: str, lang: Lang, **values: object) -> str:
    """The words for ``key`` in ``lang``, with ``{placeholders}`` filled in."""
    english, danish = LABELS[key]
    text = danish if lang == "da" else english
    return text.format(**values) if values else text


def choose_lang(query: str | None, accept: str | None) -> Lang:
    """``?lang=da|en`` first, then the browser's Accept-Language, else English."""
    if query in ("da", "en"):
        return "da" if query == "da" else "en"
    best: tuple[float, Lang] = (0.0, "en")
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("da", "en") and weight > best[0]:
            best = (weight, "da" if primary == "da" else "en")
    return best[1]
