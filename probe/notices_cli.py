"""``probe incident open|update|resolve|list`` and ``probe announce``: written notices.

    $ echo "Labka receives no ADT messages; we are looking into it." |
    >   probe incident open -c probe.yaml --title "Labka gets nothing" --flows "gs-*" --body -
    7
    $ probe incident update 7 -c probe.yaml --state identified --body cause.md
    $ probe incident resolve 7 -c probe.yaml --body -  < fixed.md
    $ probe announce -c probe.yaml --title "EPM3 upgrade" --from "2026-10-06 18:00" \\
    >   --until "2026-10-06 20:00" --flows "gs-*"
    12
    $ probe announce -c probe.yaml --end 12

Each writes the notice (`probe.store.notices`) and queues its notifications for the
channels that want the ``incident`` event (`probe.notify.queue.queue_notice`) in one
transaction, so a message is queued exactly when the notice is written. Exit codes as in
`probe.cli`: 0 done, 1 failed (no such notice, one already resolved, the store), 2 bad
arguments or config.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from zoneinfo import ZoneInfo

from probe import logs
from probe.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from probe.config.loader import LoadedConfig
    from probe.config.models import Config
    from probe.store.notices import Notice

EXIT_OK, EXIT_FAILED, EXIT_ARGS = 0, 1, 2
STATES = ("investigating", "identified", "monitoring", "resolved")  # notices.INCIDENT_STATES
BODY_HELP = "the Markdown text: a file, or - for standard input"
FLOWS_HELP = "globs of the flow names affected, comma-separated (default: every flow)"

Change = Literal["opened", "updated", "resolved"]
Write = Callable[["AsyncConnection", datetime], Awaitable["Notice"]]


class _Refused(Exception):
    """A command that cannot be done as asked: its message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Commands(Protocol):
    """How the ``probe`` CLI adds a command (`probe.cli._Commands`)."""

    def add(
        self, name: str, func: object, description: str, *, config: bool = True
    ) -> argparse.ArgumentParser: ...


Group = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], Commands]
Load = Callable[[argparse.Namespace], "LoadedConfig"]
Command = Callable[[argparse.Namespace, "Config"], int]


def add_commands(commands: Commands, *, group: Group, load: Load) -> None:
    """Add ``incident`` (with its four subcommands) and ``announce`` to the ``probe`` CLI:
    ``group`` makes the commands of a subparser, ``load`` loads the config of ``-c``."""

    def run(command: Command) -> Callable[[argparse.Namespace], int]:
        return _guarded(load, command)

    incident: argparse.ArgumentParser = commands.add(
        "incident", lambda _: _usage(incident), "Open, update, resolve and list written "
        "incidents.", config=False,
    )  # fmt: skip
    sub = group(incident.add_subparsers(title="commands", metavar="COMMAND"))
    opened = sub.add("open", run(_open), "Open an incident and print its id.")
    opened.add_argument("--title", required=True, help="one line, at most 200 characters")
    opened.add_argument("--flows", metavar="GLOB[,GLOB]", required=True,
                        help="globs of the flows affected, comma-separated; * for all")  # fmt: skip
    opened.add_argument("--state", choices=STATES[:-1], default="investigating",
                        help="the state it opens in")  # fmt: skip
    opened.add_argument("--body", metavar="FILE|-", help=BODY_HELP)
    update = sub.add("update", run(_update), "Add an update: a new state, text or title.")
    update.add_argument("id", type=int, metavar="ID", help="the incident's id")
    update.add_argument("--state", choices=STATES, help="the new state (resolved resolves it)")
    update.add_argument("--body", metavar="FILE|-", help=BODY_HELP)
    update.add_argument("--title", help="a new title")
    resolve = sub.add("resolve", run(_resolve), "Resolve an incident, with a last update.")
    resolve.add_argument("id", type=int, metavar="ID", help="the incident's id")
    resolve.add_argument("--body", metavar="FILE|-", help=BODY_HELP)
    sub.add("list", run(_list), "List the active and upcoming incidents and announcements, "
            "one per line: id, state, title and flows, separated by tabs.")  # fmt: skip
    announce = commands.add(
        "announce", run(_announce), "Post or end an announcement: planned work, a change.",
    )  # fmt: skip
    what = announce.add_mutually_exclusive_group(required=True)
    what.add_argument("--title", help="one line, at most 200 characters")
    what.add_argument("--end", type=int, metavar="ID", help="end this announcement now")
    announce.add_argument("--body", metavar="FILE|-", help=BODY_HELP)
    announce.add_argument("--flows", metavar="GLOB[,GLOB]", help=FLOWS_HELP)
    announce.add_argument("--from", dest="start", metavar="TIME", help="shown from (default: now)")
    announce.add_argument("--until", metavar="TIME", help="shown until (default: until ended)")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_ARGS


def _guarded(load: Load, command: Command) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with the config; refusals as one ``error:`` line and their exit code:
    1 for what cannot be done (no such notice, one already resolved), 2 for what was asked
    wrongly. A bad config is `probe.cli.main`'s to report (a `ConfigError`)."""

    def guarded(args: argparse.Namespace) -> int:
        from probe.store.notices import NoSuchNotice, NoticeClosed

        loaded = load(args)
        logs.redactor.update(loaded.secrets)
        try:
            return command(args, loaded.config)
        except _Refused as exc:
            message, code = str(exc), exc.code
        except NoSuchNotice as exc:
            message, code = str(exc.args[0]), EXIT_FAILED
        except NoticeClosed as exc:
            message, code = str(exc), EXIT_FAILED
        except ValueError as exc:  # what the store refused: a title, a state, a time
            message, code = str(exc), EXIT_ARGS
        print(f"error: {message}", file=sys.stderr)
        return code

    return guarded


def _open(args: argparse.Namespace, config: Config) -> int:
    from probe.store.notices import open_notice

    body, flows = _body(args.body), _flows(args.flows)

    async def write(conn: AsyncConnection, now: datetime) -> Notice:
        return await open_notice(
            conn, kind="incident", title=args.title, flows=flows, body=body, now=now,
            state=args.state,
        )  # fmt: skip

    print(asyncio.run(_write(config, write, "opened")).id)
    return EXIT_OK


def _update(args: argparse.Namespace, config: Config) -> int:
    from probe.store.notices import update_notice

    body = _body(args.body)

    async def write(conn: AsyncConnection, now: datetime) -> Notice:
        return await update_notice(
            conn, args.id, now=now, state=args.state, body=body, title=args.title
        )

    print(_summary(asyncio.run(_write(config, write, "updated"))))
    return EXIT_OK


def _resolve(args: argparse.Namespace, config: Config) -> int:
    from probe.store.notices import resolve_notice

    body = _body(args.body)

    async def write(conn: AsyncConnection, now: datetime) -> Notice:
        return await resolve_notice(conn, args.id, now=now, body=body)

    print(_summary(asyncio.run(_write(config, write, "resolved"))))
    return EXIT_OK


def _announce(args: argparse.Namespace, config: Config) -> int:
    from probe.store.notices import open_notice

    if args.end is not None:
        if args.flows or args.start or args.until:
            raise _Refused("--end takes no --flows, --from or --until", EXIT_ARGS)
        return _resolve(argparse.Namespace(**{**vars(args), "id": args.end}), config)
    body, flows = _body(args.body), _flows(args.flows)
    tz = ZoneInfo(config.timezone)
    start, until = _time(args.start, "--from", tz), _time(args.until, "--until", tz)
    if start is not None and until is not None and until <= start:
        raise _Refused("--until must be after --from", EXIT_ARGS)

    async def write(conn: AsyncConnection, now: datetime) -> Notice:
        return await open_notice(
            conn, kind="announcement", title=args.title, flows=flows, body=body, now=now,
            starts_at=start, ends_at=until,
        )  # fmt: skip

    print(asyncio.run(_write(config, write, "opened")).id)
    return EXIT_OK


def _list(args: argparse.Namespace, config: Config) -> int:
    from probe.store.notices import active_notices, upcoming_notices

    async def read() -> list[tuple[str, Notice]]:
        async with _connected(config) as conn:
            now = _now()
            active = [(n.state, n) for n in await active_notices(conn, now=now)]
            return active + [("upcoming", n) for n in await upcoming_notices(conn, now=now)]

    for state, notice in asyncio.run(read()):
        flows = ",".join(notice.flows) or "*"
        print(f"{notice.id}\t{state}\t{notice.title}\t{flows}")
    return EXIT_OK


async def _write(config: Config, write: Write, change: Change) -> Notice:
    """Write the notice and queue its notifications, in one transaction."""
    from probe.notify.queue import queue_notice

    async with _connected(config, begin=True) as conn:
        now = _now()
        notice = await write(conn, now)
        if change == "updated" and notice.resolved_at is not None:
            change = "resolved"  # update --state resolved
        await queue_notice(conn, config, notice, change, now=now)
        return notice


@asynccontextmanager
async def _connected(config: Config, *, begin: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection to the config's store (SQLite brought up to date, PostgreSQL checked),
    in a transaction with ``begin``; store failures are a `StoreError`."""
    from sqlalchemy.exc import SQLAlchemyError

    from probe.store import open_store, safe_url

    store = await open_store(config.store.url)
    try:
        async with store.engine.begin() if begin else store.engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot use the store {safe_url(config.store.url)}: {exc}") from exc
    finally:
        await store.close()


def _now() -> datetime:
    from probe.model import utcnow

    return utcnow()


def _body(source: str | None) -> str:
    """The text of ``--body``: a file, ``-`` for standard input, nothing for none."""
    if source is None:
        return ""
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Refused(f"cannot read --body {source}: {exc}", EXIT_ARGS) from exc


def _flows(text: str | None) -> list[str]:
    globs = [glob.strip() for glob in (text or "").split(",")]
    return [] if globs in ([""], ["*"]) else globs


def _time(text: str | None, option: str, tz: ZoneInfo) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment.replace(tzinfo=tz) if moment.tzinfo is None else moment
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: a time near year 1 or 9999
        raise _Refused(
            f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-10-06T18:00 or "
            "2026-10-06T18:00+02:00",
            EXIT_ARGS,
        ) from None


def _summary(notice: Notice) -> str:
    return f"{notice.kind} {notice.id}: {notice.state}"
