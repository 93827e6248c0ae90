"""The ``probe`` command line. Exit codes: 0 fine, 1 failure or bad result, 2 bad config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from probe import __version__, logs
from probe.durations import format_duration
from probe.errors import ConfigError, StartupError, StoreError
from probe.notices_cli import add_commands as add_notice_commands

if TYPE_CHECKING:  # imported where used: the config models load the transports of other
    # packages, and an entry point that cannot be loaded is then an error main() reports
    from probe.config.loader import LoadedConfig
    from probe.config.models import FlowSpec

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_STORE = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return EXIT_CONFIG
    stream = sys.stderr if args.command is cmd_once else sys.stdout
    logs.configure(level=args.log_level, json=_json_flag(args.log_format), stream=stream)
    try:
        return int(args.command(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except (StoreError, StartupError) as exc:
        print(f"error: {logs.redactor.redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


DESCRIPTION = (
    "dataflow-probe: sends tagged test messages through your integrations and measures "
    "whether, and how fast, they arrive."
)
EPILOG = (
    "Exit codes: 0 fine, 1 failure or a bad result, 2 bad config or arguments, "
    "3 store unreachable (probe report). probe COMMAND --help describes a command."
)


class _HelpFormatter(argparse.HelpFormatter):
    """Plain help text, with each option's default unless it has none or names its own."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if not action.option_strings or "default" in text or _no_default(default):
            return text
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _no_default(default: object) -> bool:
    # By identity: a default of 0 is shown, one of False (a flag) is not.
    return default is None or default is False or default is argparse.SUPPRESS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
        help="the least important log events shown",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", default="auto", choices=["auto", "json", "console"],
        help="auto: JSON unless the output is a terminal",
    )  # fmt: skip
    commands = _Commands(parser.add_subparsers(title="commands", metavar="COMMAND"))
    _add_probing(commands)
    _add_db(commands)
    add_notice_commands(commands, group=_Commands, load=_load)  # incident, announce
    report = commands.add("report", cmd_report, "Write the monthly operational statistics.")
    report.add_argument(
        "--month", metavar="YYYY-MM", required=True, help="the month, in the config's time zone"
    )
    report.add_argument("--format", default="json", choices=["json", "csv", "md", "html"],
                        help="the output format")  # fmt: skip
    report.add_argument("--lang", default="en", choices=["da", "en"],
                        help="the language of the text")  # fmt: skip
    report.add_argument(
        "-o", "--output", metavar="FILE", help="write to this file, atomically (default: stdout)"
    )
    return parser


class _Commands:
    """Adds a command with its one-line description (``-c FILE`` too, if it reads a config)."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self.sub = sub

    def add(
        self, name: str, func: object, description: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        """A command ``name`` that runs ``func(args)``."""
        command = self.sub.add_parser(
            name, help=description, description=description, formatter_class=_HelpFormatter
        )
        command.set_defaults(command=func)
        if config:
            command.add_argument(
                "-c", "--config", metavar="FILE", default=os.environ.get("PROBE_CONFIG"),
                help="the config file (default: $PROBE_CONFIG)",
            )  # fmt: skip
        return command


def _add_probing(commands: _Commands) -> None:
    run = commands.add("run", cmd_run, "Run the probe daemon.")
    run.add_argument(
        "--node", metavar="NAME", default=os.environ.get("PROBE_NODE"),
        help="this daemon's name in the store, unique among daemons sharing it "
        "(default: $PROBE_NODE, else the host name)",
    )  # fmt: skip
    commands.add("check-config", cmd_check_config, "Validate a config file, one line per flow.")
    once = commands.add("once", cmd_once, "Probe every flow once and print the results.")
    once.add_argument("--flow", metavar="NAME", help="only this flow (default: every flow)")
    once.add_argument(
        "--store",
        action="store_true",
        help="also write the results to the configured store, marked ad hoc: kept for the "
        "record and left out of every statistic (by default nothing is written)",
    )
    demo = commands.add(
        "demo", cmd_demo, "Run the simulator and the daemon together on SQLite.", config=False
    )
    demo.add_argument(
        "--duration", metavar="SECONDS", type=float, default=120.0, help="how long to run"
    )
    demo.add_argument(
        "--free-ports", action="store_true",
        help="let the OS pick every port, instead of the demo configs' 9464, 18075, 18076 "
        "and 18080 (beside a daemon or another demo)",
    )  # fmt: skip
    commands.add("sim", cmd_sim, "Run the simulated integration landscape on its own.")


def _add_db(commands: _Commands) -> None:
    db: argparse.ArgumentParser = commands.add(
        "db", lambda _: _missing_db_command(db), "Manage the store's database.", config=False
    )
    db_commands = _Commands(db.add_subparsers(title="commands", metavar="COMMAND"))
    db_commands.add("upgrade", cmd_db_upgrade, "Bring the store's schema up to date.")
    db_commands.add("prune", cmd_db_prune, "Delete raw rows older than store.retention.raw.")
    rollup = db_commands.add(
        "rollup", cmd_db_rollup, "Rebuild the hourly rollups and incidents from raw results."
    )
    rollup.add_argument("--rebuild", action="store_true", required=True,
                        help="recompute them all (required)")  # fmt: skip


def _missing_db_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_CONFIG


def _json_flag(value: str) -> bool | None:
    return {"json": True, "console": False}.get(value)


def _load(args: argparse.Namespace) -> LoadedConfig:
    if not args.config:
        raise ConfigError(["no config file: give -c FILE or set PROBE_CONFIG"])
    from probe.config.loader import load_config  # a StartupError here is main()'s to report

    try:
        return load_config(args.config)
    except ConfigError:
        raise
    except Exception as exc:  # a bug: one line and exit 2, its text unshown (it may quote a secret)
        problem = f"{args.config}:1: cannot load the config: internal error ({type(exc).__name__})"
        raise ConfigError([problem]) from exc


def cmd_check_config(args: argparse.Namespace) -> int:
    from probe.config.models import resolve_flows

    loaded = _load(args)
    logs.redactor.update(loaded.secrets)
    for flow in resolve_flows(loaded.config):
        print(logs.redactor.redact(describe_flow(flow)) if loaded.secrets else describe_flow(flow))
    return EXIT_OK


def describe_flow(flow: FlowSpec) -> str:
    """One line: ``gs-rest: http POST host/path -> labka (http), every 30s, timeout 5m, ...``."""
    schedule = (
        f"cron '{flow.cron}'" if flow.cron else f"every {format_duration(flow.interval or 0)}"
    )
    if flow.is_check:
        where = "check"
        slo = f"slo {format_duration(flow.slo_latency)}/{flow.slo_objective:.2%}"
    else:
        where = "-> " + ", ".join(f"{d.name} ({d.config.type})" for d in flow.destinations)
        slo = "slo " + ", ".join(
            f"{d.name} {format_duration(d.slo_latency)}/{d.slo_objective:.2%}"
            for d in flow.destinations
        )
    return (
        f"{flow.name}: {flow.source.summary} {where}, {schedule}, "
        f"timeout {format_duration(flow.timeout)}, {slo}"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from probe.engine.daemon import Daemon

    loaded = _load(args)
    code: int = asyncio.run(Daemon(loaded, node=args.node or None).run())
    return code


def cmd_once(args: argparse.Namespace) -> int:
    from probe.engine.once import run_once

    loaded = _load(args)
    code: int = asyncio.run(run_once(loaded, only=args.flow, store=args.store))
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    from probe.engine.demo import run_demo

    code: int = asyncio.run(
        run_demo(duration=args.duration, workdir=Path.cwd(), free_ports=args.free_ports)
    )
    return code


def cmd_sim(args: argparse.Namespace) -> int:
    from probe.sim.run import run_sim

    if not args.config:
        raise ConfigError(["no simulator config: give -c FILE"])
    return asyncio.run(run_sim(Path(args.config)))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from probe.store import create_engine, safe_url
    from probe.store.migrate import upgrade

    loaded = _load(args)
    url = loaded.config.store.url

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        except Exception as exc:
            raise StoreError(f"cannot upgrade {safe_url(url)}: {exc}") from exc
        finally:
            await engine.dispose()

    asyncio.run(run())
    print(f"store {safe_url(url)} is up to date")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from probe.report.cli import run_report

    return run_report(
        _load(args), month=args.month, fmt=args.format, lang=args.lang, output=args.output
    )


def cmd_db_prune(args: argparse.Namespace) -> int:
    from probe.store.housekeeping import prune_url

    loaded = _load(args)
    deleted = asyncio.run(prune_url(loaded.config.store.url, loaded.config.store.retention.raw))
    print(f"deleted {deleted} raw rows older than the retention; rollups kept")
    return EXIT_OK


def cmd_db_rollup(args: argparse.Namespace) -> int:
    from probe.config.models import resolve_flows
    from probe.store.housekeeping import rebuild_rollups

    loaded = _load(args)
    intervals = {f.name: f.interval for f in resolve_flows(loaded.config) if f.interval}
    read = asyncio.run(rebuild_rollups(loaded.config.store.url, intervals=intervals))
    print(f"rebuilt rollups and incidents from {read} results")
    return EXIT_OK
