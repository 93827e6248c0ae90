"""Benchmark: CPU per HTTP check for httpx transports, and how each maps failures.

Run from the repo root (needs `nginx` and `prometheus-blackbox-exporter` from Debian, and
`openssl` for the TLS cases; everything listens on 127.0.0.1 only):

    /work/venv/bin/python bench/http_transport.py --requests 5000 --concurrency 16 --rounds 3

Part 1 starts a private nginx (temp dir, free port, `daemon off`) serving `/health`, and a
private blackbox exporter with module `http_2xx`, then for each round (variant order rotated
every round) sends N GETs at the given concurrency through one client per variant:

* `httpx-default`        httpx.AsyncClient with its own (httpcore) transport
* `httpx-aiohttp`        httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport())
* `httpx-default+close`  as above, `Connection: close` on every request (a new TCP conn each)
* `httpx-aiohttp+close`  as above, `Connection: close` on every request
* `aiohttp-raw`          aiohttp.ClientSession alone: a floor for the aiohttp transport
* `blackbox-exporter`    `/probe?module=http_2xx&target=<nginx>/health` driven by aiohttp;
                         the CPU counted is the exporter's (/proc/PID/stat utime+stime)

CPU of this process is `time.process_time()` (all threads). A warm-up of `--warmup`
requests on the same client precedes each measured batch, so pooled connections are open.
nginx CPU (master + workers, /proc) and new TCP connections nginx accepted (stub_status)
are reported for every variant.

Part 2 requests a set of misbehaving local servers through both httpx transports with
`timeout=httpx.Timeout(0.5)` and prints the exception class raised, its `__cause__` and
which httpx family it belongs to.

Both tables are printed as Markdown. `--skip-bench` / `--skip-exceptions` run one part only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

LOCALHOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

Send = Callable[[], Awaitable[bool]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# ---------------------------------------------------------------------------------------
# processes: ports, /proc accounting, nginx and blackbox exporter
# ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        sys.exit(f"{name} not found: apt-get install -y nginx prometheus-blackbox-exporter")
    return path


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOCALHOST, port), 0.2):
            return
        time.sleep(0.05)
    sys.exit(f"{proc.args!r} did not listen on {port} within {timeout}s")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                children.append(int(entry.name))
    return children


def tree_cpu_seconds(pid: int, children: Sequence[int]) -> float:
    return proc_cpu_seconds(pid) + sum(proc_cpu_seconds(child) for child in children)


@contextlib.contextmanager
def running(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {host}:{port};
        location /health {{ return 200 'ok'; }}
        location /nginx_status {{ stub_status; }}
    }}
}}
"""

BLACKBOX_CONF = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
"""


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[tuple[int, int]]:
    """Yield (master pid, port) of a private nginx."""
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, host=LOCALHOST, port=port))
    args = [find_binary("nginx"), "-p", str(workdir), "-c", str(conf), "-e", "stderr"]
    with running(args, port, workdir / "nginx.out") as proc:
        yield proc.pid, port


def nginx_workers(master: int, timeout: float = 5.0) -> tuple[int, ...]:
    """The worker pids of an nginx master, once it has forked them."""
    deadline = time.monotonic() + timeout
    while not (workers := child_pids(master)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return tuple(workers)


@contextlib.contextmanager
def blackbox_exporter(workdir: Path) -> Iterator[tuple[int, int]]:
    """Yield (pid, port) of a private blackbox exporter with module http_2xx."""
    port = free_port()
    conf = workdir / "blackbox.yml"
    conf.write_text(BLACKBOX_CONF)
    args = [
        find_binary("prometheus-blackbox-exporter"),
        f"--config.file={conf}",
        f"--web.listen-address={LOCALHOST}:{port}",
        "--log.level=warn",
    ]
    with running(args, port, workdir / "blackbox.out") as proc:
        yield proc.pid, port


def nginx_accepts(port: int) -> int:
    """Connections nginx has accepted so far (stub_status), counting this one."""
    with socket.create_connection((LOCALHOST, port), 5) as sock:
        sock.sendall(b"GET /nginx_status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    # body: "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \n..."
    lines = data.split(b"\r\n\r\n", 1)[1].decode().splitlines()
    return int(lines[2].split()[0])


# ---------------------------------------------------------------------------------------
# part 1: the benchmark
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Env:
    nginx_pid: int
    nginx_children: tuple[int, ...]
    nginx_port: int
    exporter_pid: int
    exporter_port: int

    @property
    def health_url(self) -> str:
        return f"http://{LOCALHOST}:{self.nginx_port}/health"

    @property
    def probe_url(self) -> str:
        return (
            f"http://{LOCALHOST}:{self.exporter_port}/probe"
            f"?module=http_2xx&target={self.health_url}"
        )


@dataclass(frozen=True)
class Snapshot:
    wall: float
    client_cpu: float
    nginx_cpu: float
    exporter_cpu: float
    accepts: int


def snapshot(env: Env) -> Snapshot:
    return Snapshot(
        wall=time.perf_counter(),
        client_cpu=time.process_time(),
        nginx_cpu=tree_cpu_seconds(env.nginx_pid, env.nginx_children),
        exporter_cpu=proc_cpu_seconds(env.exporter_pid),
        accepts=nginx_accepts(env.nginx_port),
    )


@dataclass(frozen=True)
class Variant:
    name: str
    opener: Callable[[Env], contextlib.AbstractAsyncContextManager[Send]]
    on_exporter: bool = False  # True: the CPU that counts is the exporter's


@dataclass(frozen=True)
class Sample:
    variant: Variant
    requests: int
    errors: int
    wall: float
    client_cpu: float
    nginx_cpu: float
    exporter_cpu: float
    new_conns: int

    @property
    def cpu(self) -> float:
        return self.exporter_cpu if self.variant.on_exporter else self.client_cpu


@contextlib.asynccontextmanager
async def httpx_sender(
    url: str, transport: httpx.AsyncBaseTransport | None, close: bool
) -> AsyncIterator[Send]:
    headers = {"Connection": "close"} if close else {}
    async with httpx.AsyncClient(transport=transport, headers=headers, timeout=10.0) as client:

        async def send() -> bool:
            response = await client.get(url)
            return response.status_code == 200 and response.content == b"ok"

        yield send


@contextlib.asynccontextmanager
async def aiohttp_sender(url: str, expect: bytes) -> AsyncIterator[Send]:
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def send() -> bool:
            async with session.get(url) as response:
                body = await response.read()
                return response.status == 200 and expect in body

        yield send


VARIANTS = (
    Variant("httpx-default", lambda env: httpx_sender(env.health_url, None, close=False)),
    Variant(
        "httpx-aiohttp",
        lambda env: httpx_sender(env.health_url, AiohttpTransport(), close=False),
    ),
    Variant("httpx-default+close", lambda env: httpx_sender(env.health_url, None, close=True)),
    Variant(
        "httpx-aiohttp+close",
        lambda env: httpx_sender(env.health_url, AiohttpTransport(), close=True),
    ),
    Variant("aiohttp-raw", lambda env: aiohttp_sender(env.health_url, b"ok")),
    Variant(
        "blackbox-exporter",
        lambda env: aiohttp_sender(env.probe_url, b"\nprobe_success 1\n"),
        on_exporter=True,
    ),
)


async def drive(send: Send, total: int, concurrency: int) -> int:
    """Send `total` requests with `concurrency` workers; return how many failed."""
    remaining = total
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                ok = await send()
            except Exception as exc:
                print(f"  request failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                ok = False
            errors += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def measure(variant: Variant, env: Env, args: argparse.Namespace) -> Sample:
    async with variant.opener(env) as send:
        await drive(send, args.warmup, args.concurrency)
        before = snapshot(env)
        errors = await drive(send, args.requests, args.concurrency)
        after = snapshot(env)
    return Sample(
        variant=variant,
        requests=args.requests,
        errors=errors,
        wall=after.wall - before.wall,
        client_cpu=after.client_cpu - before.client_cpu,
        nginx_cpu=after.nginx_cpu - before.nginx_cpu,
        exporter_cpu=after.exporter_cpu - before.exporter_cpu,
        new_conns=after.accepts - before.accepts - 1,  # minus the stub_status read itself
    )


def run_rounds(env: Env, args: argparse.Namespace) -> list[Sample]:
    samples = []
    for round_no in range(args.rounds):
        shift = round_no % len(VARIANTS)
        order = VARIANTS[shift:] + VARIANTS[:shift]
        for variant in order:
            sample = asyncio.run(measure(variant, env, args))
            samples.append(sample)
            print(
                f"round {round_no + 1} {variant.name:<20} {sample.wall:6.2f} s "
                f"cpu {ms_per(sample.cpu, sample):.3f} ms/req errors {sample.errors}",
                file=sys.stderr,
            )
    return samples


def ms_per(seconds: float, sample: Sample) -> float:
    return 1000.0 * seconds / sample.requests


def median_of(samples: Sequence[Sample], value: Callable[[Sample], float]) -> float:
    return statistics.median(value(sample) for sample in samples)


def summary_rows(samples: Sequence[Sample]) -> list[list[str]]:
    by_name = {v.name: [s for s in samples if s.variant is v] for v in VARIANTS}
    base = median_of(by_name["httpx-default"], lambda s: ms_per(s.cpu, s))
    rows = []
    for variant in VARIANTS:
        group = by_name[variant.name]
        cpu_ms = median_of(group, lambda s: ms_per(s.cpu, s))
        rows.append(
            [
                variant.name,
                "exporter" if variant.on_exporter else "python client",
                str(group[0].requests),
                str(sum(s.errors for s in group)),
                f"{median_of(group, lambda s: s.wall):.2f}",
                f"{median_of(group, lambda s: s.requests / s.wall):.0f}",
                f"{cpu_ms:.3f}",
                f"{cpu_ms / base:.2f}",
                " / ".join(f"{ms_per(s.cpu, s):.3f}" for s in group),
                f"{median_of(group, lambda s: ms_per(s.client_cpu, s)):.3f}",
                f"{median_of(group, lambda s: ms_per(s.nginx_cpu, s)):.3f}",
                f"{median_of(group, lambda s: s.new_conns / s.requests):.3f}",
            ]
        )
    return rows


SUMMARY_HEADERS = [
    "variant",
    "CPU counted",
    "requests",
    "errors (all rounds)",
    "wall s",
    "req/s",
    "CPU ms/request",
    "ratio vs httpx-default",
    "CPU ms/request per round",
    "python CPU ms/req",
    "nginx CPU ms/req",
    "new conns/req",
]


def run_bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        with nginx(workdir) as (nginx_pid, nginx_port), blackbox_exporter(workdir) as bb:
            env = Env(nginx_pid, nginx_workers(nginx_pid), nginx_port, bb[0], bb[1])
            samples = run_rounds(env, args)
    print(
        f"\n### CPU per request: {args.requests} requests x {args.rounds} rounds, "
        f"concurrency {args.concurrency}, medians over rounds\n"
    )
    print(markdown_table(SUMMARY_HEADERS, summary_rows(samples)))


# ---------------------------------------------------------------------------------------
# part 2: which exception each transport raises
# ---------------------------------------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        await reader.readuntil(b"\r\n\r\n")


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def handle_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read, never answer; wait for the client to give up."""
    with contextlib.suppress(OSError):
        await reader.read()
    await close_writer(writer)


async def handle_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await close_writer(writer)


def replying(payload: bytes, *, read_request: bool = True, stall: bool = False) -> Handler:
    """A handler that writes `payload`, then closes (or stalls until the client closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read_request:
            await read_head(reader)
        else:
            await reader.read(4096)
        writer.write(payload)
        with contextlib.suppress(OSError):
            await writer.drain()
            if stall:
                await reader.read()
        await close_writer(writer)

    return handle


RESPONSE_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nerror"
RESPONSE_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
RESPONSE_400 = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
RESPONSE_SHORT = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
GARBAGE = b"SSH-2.0-OpenSSH_9.2p1\r\n"
PLAIN_HTTP = replying(RESPONSE_400, read_request=False)  # like nginx: 400 to a TLS hello


@dataclass(frozen=True)
class Case:
    key: str
    description: str
    handler: Handler | None  # None: nothing listens (a closed port)
    scheme: str = "http"
    tls: bool = False
    verify: bool = True


CASES = (
    Case("i", "connection refused (closed port)", None),
    Case("ii", "accepts, never answers", handle_silent),
    Case("iii", "accepts, closes at once", handle_close),
    Case("iii-b", "reads request, closes, no reply", replying(b"")),
    Case("iv", "answers HTTP 500", replying(RESPONSE_500)),
    Case("v-a", "https:// to a plain-HTTP port", PLAIN_HTTP, "https"),
    Case("v-b", "self-signed TLS, verify on", replying(RESPONSE_200), "https", tls=True),
    Case("v-c", "self-signed TLS, verify off", replying(RESPONSE_200), "https", True, False),
    Case("vi", "answers non-HTTP bytes", replying(GARBAGE)),
    Case("vii", "body cut short, then close", replying(RESPONSE_SHORT)),
    Case("viii", "body stalls after headers", replying(RESPONSE_SHORT, stall=True)),
)

FAMILIES: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.ProtocolError,
    httpx.UnsupportedProtocol,
    httpx.TransportError,
    httpx.HTTPStatusError,
    httpx.HTTPError,
)

TRANSPORTS: dict[str, Callable[[bool], httpx.AsyncBaseTransport]] = {
    "default": lambda verify: httpx.AsyncHTTPTransport(verify=verify),
    "aiohttp": lambda verify: AiohttpTransport(verify=verify),
}


def qualname(obj: object) -> str:
    if obj is None:
        return "-"
    cls = type(obj)
    module = cls.__module__.split(".")[0]
    return f"{module}.{cls.__qualname__}"


def short(exc: BaseException) -> str:
    return " ".join(str(exc).replace("\\n", " ").split())[:60]


def family(exc: BaseException) -> str:
    for base in FAMILIES:
        if isinstance(exc, base):
            return base.__name__
    return "NOT an httpx.HTTPError"


def make_cert(workdir: Path) -> ssl.SSLContext | None:
    """Self-signed cert for 127.0.0.1 (so only the trust check fails); None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def start_case_server(case: Case, tls: ssl.SSLContext | None) -> asyncio.Server | None:
    if case.handler is None:
        return None
    return await asyncio.start_server(case.handler, LOCALHOST, 0, ssl=tls if case.tls else None)


async def try_request(transport: str, case: Case, url: str) -> list[str]:
    """Return [exception, __cause__, family, elapsed] for one request."""
    client = httpx.AsyncClient(
        transport=TRANSPORTS[transport](case.verify), timeout=httpx.Timeout(0.5)
    )
    started = time.perf_counter()
    async with client:
        try:
            response = await client.get(url)
            response.raise_for_status()
        except Exception as exc:
            elapsed = f"{time.perf_counter() - started:.2f}"
            return [qualname(exc), qualname(exc.__cause__), family(exc), elapsed, short(exc)]
    elapsed = f"{time.perf_counter() - started:.2f}"
    return [f"none: HTTP {response.status_code}", "-", "-", elapsed, ""]


async def run_case(case: Case, tls: ssl.SSLContext | None) -> list[list[str]]:
    server = await start_case_server(case, tls)
    port = server.sockets[0].getsockname()[1] if server else free_port()
    url = f"{case.scheme}://{LOCALHOST}:{port}/health"
    rows = []
    try:
        for transport in TRANSPORTS:
            result = await try_request(transport, case, url)
            rows.append([f"{case.key} {case.description}", transport, *result])
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()
    return rows


async def run_cases(tls: ssl.SSLContext | None) -> list[list[str]]:
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
    rows = []
    for case in CASES:
        if case.tls and tls is None:
            continue
        rows.extend(await run_case(case, tls))
    return rows


EXCEPTION_HEADERS = [
    "case",
    "transport",
    "exception raised",
    "__cause__",
    "httpx family",
    "after s",
    "message (cut)",
]


def run_exceptions() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        tls = make_cert(Path(tmp))
        rows = asyncio.run(run_cases(tls))
    print("\n### Exceptions, timeout=httpx.Timeout(0.5); HTTP 4xx/5xx via raise_for_status()\n")
    print(markdown_table(EXCEPTION_HEADERS, rows))


# ---------------------------------------------------------------------------------------
# output and entry point
# ---------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(headers), *[[c.replace("|", "\\|") for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def versions() -> str:
    packages = ("httpx", "httpcore", "h11", "anyio", "aiohttp", "httpx-aiohttp")
    parts = [f"python {platform.python_version()}"]
    parts += [f"{name} {metadata.version(name)}" for name in packages]
    return ", ".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per run")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--skip-bench", action="store_true", help="exception table only")
    parser.add_argument("--skip-exceptions", action="store_true", help="benchmark only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"{versions()}; nproc {os.cpu_count()}")
    if not args.skip_bench:
        run_bench(args)
    if not args.skip_exceptions:
        run_exceptions()


if __name__ == "__main__":
    main()
