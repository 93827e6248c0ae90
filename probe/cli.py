"""The ``probe`` command line. Exit codes: 0 fine, 1 failure or bad result, 2 bad config."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from probe import __version__, logs
from probe.config.loader import LoadedConfig, load_config
from probe.config.models import FlowSpec, resolve_flows
from probe.durations import format_duration
from probe.errors import ConfigError, StartupError, StoreError

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])
    sub = parser.add_subparsers()

    def command(name: str, func: object, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(command=func)
        return p

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", default=os.environ.get("PROBE_CONFIG"),
            help="config file (default: $PROBE_CONFIG)",
        )  # fmt: skip

    run = command("run", cmd_run, "Run the probe daemon.")
    with_config(run)
    run.add_argument(
        "--node", default=os.environ.get("PROBE_NODE"),
        help="this daemon's name in the store, unique among daemons sharing it "
        "(default: $PROBE_NODE, else the host name)",
    )  # fmt: skip
    with_config(command("check-config", cmd_check_config, "Validate a config file."))
    once = command("once", cmd_once, "Run every flow once, print the results.")
    with_config(once)
    once.add_argument("--flow", help="only this flow")
    once.add_argument(
        "--store",
        action="store_true",
        help="also write the results to the configured store, marked ad hoc: kept for the "
        "record and left out of every statistic (by default nothing is written)",
    )
    demo = command("demo", cmd_demo, "Run the simulator and the daemon together on SQLite.")
    demo.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    with_config(command("sim", cmd_sim, "Run the simulated integration landscape."))
    db: argparse.ArgumentParser = command(
        "db", lambda _: _missing_db_command(db), "Database commands."
    )
    db_sub = db.add_subparsers()
    upgrade = db_sub.add_parser("upgrade", help="Bring the store's schema up to date.")
    upgrade.set_defaults(command=cmd_db_upgrade)
    with_config(upgrade)
    prune = db_sub.add_parser("prune", help="Delete raw rows older than store.retention.raw.")
    prune.set_defaults(command=cmd_db_prune)
    with_config(prune)
    rollup = db_sub.add_parser("rollup", help="Rebuild hourly rollups and incidents.")
    rollup.add_argument("--rebuild", action="store_true", required=True)
    rollup.set_defaults(command=cmd_db_rollup)
    with_config(rollup)
    report = command("report", cmd_report, "Monthly operational statistics.")
    report.add_argument("--month", required=True, help="YYYY-MM, in the config's time zone")
    report.add_argument("--format", default="json", choices=["json", "csv", "md", "html"])
    report.add_argument("--lang", default="en", choices=["da", "en"])
    report.add_argument("-o", "--output", help="write to this file (atomically)")
    with_config(report)
    return parser


def _missing_db_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_CONFIG


def _json_flag(value: str) -> bool | None:
    return {"json": True, "console": False}.get(value)


def _load(args: argparse.Namespace) -> LoadedConfig:
    if not args.config:
        raise ConfigError(["no config file: give -c FILE or set PROBE_CONFIG"])
    try:
        return load_config(args.config)
    except ConfigError:
        raise
    except Exception as exc:  # a bug: one line and exit 2, its text unshown (it may quote a secret)
        problem = f"{args.config}:1: cannot load the config: internal error ({type(exc).__name__})"
        raise ConfigError([problem]) from exc


def cmd_check_config(args: argparse.Namespace) -> int:
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

    return asyncio.run(run_demo(duration=args.duration, workdir=Path.cwd()))


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
    from probe.store.housekeeping import rebuild_rollups

    loaded = _load(args)
    intervals = {f.name: f.interval for f in resolve_flows(loaded.config) if f.interval}
    read = asyncio.run(rebuild_rollups(loaded.config.store.url, intervals=intervals))
    print(f"rebuilt rollups and incidents from {read} results")
    return EXIT_OK
