"""Labels in Danish and English for the human-readable report formats.

Every label exists in both languages; `label()` raises `KeyError` on a typo instead of
printing a half-translated report. CSV and JSON are for machines and use no labels.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Lang = Literal["da", "en"]
"""A report language: ``"da"`` (Danish) or ``"en"`` (English)."""

LANGS: Final[tuple[Lang, ...]] = get_args(Lang)

# key: (English, Danish). One table, so a missing translation is visible side by side.
_LABELS: Final[dict[str, tuple[str, str]]] = {
    "title": ("Monthly integration report", "Månedsrapport for integrationer"),
    "period": ("Period", "Periode"),
    "hours": ("hours", "timer"),
    "timezone": ("Times in", "Tider i"),
    "generated": ("Generated", "Dannet"),
    "summary": ("Summary", "Overblik"),
    "flow": ("Flow", "Flow"),
    "destination": ("Destination", "Destination"),
    "check": ("(check)", "(tjek)"),
    "availability": ("Availability", "Tilgængelighed"),
    "time_availability": ("Time availability", "Tidsbaseret tilgængelighed"),
    "objective": ("SLO objective", "SLO-mål"),
    "slo": ("SLO", "SLO"),
    "met": ("Objective met", "Mål opfyldt"),
    "missed": ("Objective missed", "Mål ikke opfyldt"),
    "not_evaluated": ("Not evaluated", "Ikke vurderet"),
    "no_data": ("No data", "Ingen data"),
    "no_data_note": (
        "No probe results were recorded this month, so availability cannot be stated.",
        "Der er ikke registreret nogen målinger i denne måned, så tilgængeligheden kan ikke "
        "opgøres.",
    ),
    "latency": ("Latency", "Forsinkelse"),
    "latency_p95": ("Latency p95", "Forsinkelse p95"),
    # The latency SLO: slower than this is "late". Not the deadline, which is the timeout.
    "latency_objective": ("Latency objective", "Forsinkelsesmål"),
    "max": ("max", "maks."),
    "incidents": ("Incidents", "Hændelser"),
    "no_incidents": ("No incidents.", "Ingen hændelser."),
    "start": ("Start", "Start"),
    "end": ("End", "Slut"),
    "duration": ("Duration", "Varighed"),
    "cause": ("Cause", "Årsag"),
    "maintenance": ("Maintenance", "Vedligehold"),
    "maintenance_note": (
        "Left out of every figure above: {count} probes.",
        "Holdt uden for alle tal ovenfor: {count} målinger.",
    ),
    "no_maintenance": ("No maintenance windows.", "Ingen vedligeholdsvinduer."),
    "name": ("Name", "Navn"),
    "mttr": ("MTTR (mean time to recover)", "MTTR (gns. tid til genopretning)"),
    "mtbf": ("MTBF (mean time between failures)", "MTBF (gns. tid mellem fejl)"),
    "previous": ("Previous month", "Forrige måned"),
    "change": ("Change", "Ændring"),
    "error_budget": ("Error budget used", "Fejlbudget brugt"),
    "probes": ("Probes", "Målinger"),
    "excluded": ("Excluded (maintenance)", "Udeladt (vedligehold)"),
    "outcomes": ("Outcomes", "Udfald"),
    "daily_availability": ("Daily availability", "Daglig tilgængelighed"),
    "daily_latency": ("Daily latency (seconds)", "Daglig forsinkelse (sekunder)"),
    "day": ("Day of month", "Dag i måneden"),
    "status_line": (
        "{met} met the objective, {missed} missed it, {none} without data.",
        "{met} opfyldte målet, {missed} opfyldte det ikke, {none} uden data.",
    ),
    "definitions": ("How to read this report", "Sådan læses rapporten"),
    "def_availability": (
        "Availability: delivered probes divided by probes counted (maintenance left out).",
        "Tilgængelighed: leverede målinger delt med talte målinger (vedligehold holdt ude).",
    ),
    "def_time": (
        "Time availability: share of the measured time, outside maintenance, "
        "that is not inside an incident.",
        "Tidsbaseret tilgængelighed: andel af den målte tid uden for vedligehold, "
        "som ikke ligger i en hændelse.",
    ),
    "def_coverage": (
        "Coverage: the probes measured, as a share of those the schedule has in the month. "
        "Not measured: time before monitoring began, while the probe was stopped, after the "
        "report was generated, and probes the prober itself failed.",
        "Dækning: de udførte målinger som andel af dem, tidsplanen har i måneden. Ikke målt: "
        "tid før overvågningen begyndte, mens måleren var stoppet, efter rapporten blev dannet, "
        "og målinger, som måleren selv fejlede.",
    ),
    "measured_only": (
        "Time availability is computed over measured time only: time that was not measured "
        "counts neither as available nor as unavailable.",
        "Tidsbaseret tilgængelighed er kun beregnet over den målte tid: tid, der ikke er målt, "
        "tæller hverken som tilgængelig eller som utilgængelig.",
    ),
    "coverage": ("Coverage", "Dækning"),
    "coverage_of": (
        "{measured} of {expected} scheduled probes",
        "{measured} af {expected} planlagte målinger",
    ),
    "not_measured": ("Not measured", "Ikke målt"),
    "partly_measured": ("Partly measured", "Delvist målt"),
    "partial": ("partial", "delvis"),
    "partial_month": ("Partial month", "Delvis måned"),
    "covered_share": (
        "monitoring covered {share} of the month",
        "overvågningen dækkede {share} af måneden",
    ),
    "covered_share_of": (
        "monitoring of {row} covered {share} of the month",
        "overvågningen af {row} dækkede {share} af måneden",
    ),
    "month_running": (
        "the month had not ended when the report was generated: measured until {until} "
        "({share} of the month)",
        "måneden var ikke slut, da rapporten blev dannet: målt indtil {until} ({share} af måneden)",
    ),
    "partly_unmeasured": (
        "parts of the month were not measured",
        "dele af måneden er ikke målt",
    ),
    "first_measured": ("First measured", "Først målt"),
    "probe_faults": (
        "Probe faults (counted as not measured)",
        "Fejl i måleren (tæller som ikke målt)",
    ),
    "probe_faults_short": ("Probe faults", "Fejl i måleren"),
    "ended_not_measured": ("measurement stopped", "målingen stoppede"),
    "ended_open": ("still open", "stadig åben"),
    "def_incident": (
        "Incident: a run of consecutive failed probes. MTTR is the mean incident duration; "
        "MTBF the time in normal operation (outside incidents and maintenance) per incident.",
        "Hændelse: en række fejlede målinger i træk. MTTR er hændelsernes gennemsnitlige "
        "varighed; MTBF driftstiden (uden for hændelser og vedligehold) pr. hændelse.",
    ),
    "def_budget": (
        "Error budget: the failures the objective allows; above 100% the objective is missed.",
        "Fejlbudget: de fejl, målet tillader; over 100 % er målet ikke opfyldt.",
    ),
    "objective_line": ("Objective", "Mål"),
    "gap": ("No data", "Ingen data"),
    "below": ("Below objective", "Under målet"),
    "chart_availability_desc": (
        "Daily availability for {name}; days not measured are hatched, days measured only "
        "in part have hollow markers, and days without data are left empty.",
        "Daglig tilgængelighed for {name}; dage, der ikke er målt, er skraverede, delvist målte "
        "dage har hule markører, og dage uden data er tomme.",
    ),
    "chart_latency_desc": (
        "Daily latency p50, p95 and p99 for {name}, in seconds.",
        "Daglig forsinkelse p50, p95 og p99 for {name}, i sekunder.",
    ),
    "pp": ("pp", "pct.-point"),
    "up": ("up", "op"),
    "down": ("down", "ned"),
    "unchanged": ("unchanged", "uændret"),
    "lost": ("Lost", "Tabt"),
    "late": ("Late", "Forsinket"),
    "delivered": ("Delivered", "Leveret"),
    "send_error": ("Send error", "Afsendelsesfejl"),
    "observe_error": ("Observation error", "Observationsfejl"),
    # Written incidents and announcements (probe.store.notices), here and in the feeds.
    "written_incidents": ("Written incidents", "Beskrevne hændelser"),
    "written_note": (
        "Incidents and announcements that the operators wrote during the month, each with its "
        "timeline. Each automatic incident below names the written ones that explain it: the "
        "same flow, at the same time.",
        "Hændelser og meddelelser, som driften skrev i løbet af måneden, hver med sit forløb. "
        "Hver automatisk hændelse nedenfor nævner de beskrevne, der forklarer den: samme flow, "
        "samme tid.",
    ),
    "no_written": (
        "No incidents or announcements were written this month.",
        "Der blev ikke skrevet nogen hændelser eller meddelelser i denne måned.",
    ),
    "kind_incident": ("Incident", "Hændelse"),
    "kind_announcement": ("Announcement", "Meddelelse"),
    "state_investigating": ("Investigating", "Undersøges"),
    "state_identified": ("Identified", "Årsag fundet"),
    "state_monitoring": ("Monitoring", "Overvåges"),
    "state_resolved": ("Resolved", "Løst"),
    "state_active": ("Active", "Aktiv"),
    "state_ended": ("Ended", "Afsluttet"),
    "affects": ("Affects", "Berører"),
    "all_flows": ("All integrations", "Alle integrationer"),
    "opened": ("Opened", "Oprettet"),
    "closed": ("Closed", "Afsluttet"),
    "still_open": ("still open", "stadig åben"),
    "timeline": ("Timeline", "Forløb"),
    "explanation": ("Explanation", "Forklaring"),
    "explained_by": ("Written incident", "Beskrevet hændelse"),
    "planned_span": ("Planned: {start} {dash} {end}", "Planlagt: {start} {dash} {end}"),
}


def label(key: str, lang: Lang, **values: object) -> str:
    """The label `key` in `lang`, with ``{placeholders}`` filled from `values`.

    >>> label("no_data", "da")
    'Ingen data'
    """
    english, danish = _LABELS[key]
    text = danish if lang == "da" else english
    return text.format(**values) if values else text


def cause(value: str, lang: Lang) -> str:
    """A cause or outcome (``lost``, ``send_error``...) in words; an unknown one as given."""
    return label(value, lang) if value in _OUTCOME_KEYS else value


_OUTCOME_KEYS: Final = frozenset({"delivered", "late", "lost", "send_error", "observe_error"})


def notice_kind(kind: str, lang: Lang) -> str:
    """``Incident`` or ``Announcement`` (da: ``Hændelse``, ``Meddelelse``); unknown as given."""
    key = f"kind_{kind}"
    return label(key, lang) if key in _LABELS else kind


def notice_state(state: str, lang: Lang) -> str:
    """A written incident's or announcement's state in words (``identified``: ``Identified``,
    da ``Årsag fundet``); an unknown one as given."""
    key = f"state_{state}"
    return label(key, lang) if key in _LABELS else state


def check_lang(lang: str) -> Lang:
    """`lang` as a `Lang`, or `ValueError` naming the languages there are."""
    for known in LANGS:
        if lang == known:
            return known
    raise ValueError(f"unknown report language {lang!r}: use one of {', '.join(LANGS)}")
