"""The spool: a local append-only file that every store write passes through first.

Each claim made while the database is unreachable, each send receipt, sighting and result
is appended here (one JSON line, one ``write`` call) before it is queued for the database,
so a killed process loses nothing: the kernel has the bytes. `sync` fsyncs what was
appended since the last call, in batches, against a power cut.

The database keeps, in ``spool_marks``, how far into each spool file it has committed,
updated in the same transaction as the rows. Replaying a file from its mark is therefore
exactly-once, even when the replay itself is interrupted.

Each record is one JSON line of a versioned format (`probe.store.records`): a record of a
version this daemon does not read raises `UnknownVersion`, a damaged one `BadRecord`.

Each process writes its own file and holds an exclusive lock on it. A file in the spool
directory whose lock can be taken belongs to a process that is gone: an orphan, replayed
at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from probe.store.records import RECORDS, VERSION, record_of
from probe.store.rows import Item

log = structlog.get_logger("probe.store.spool")

_UNSAFE = re.compile(r"[^0-9A-Za-z._-]")


@dataclass(frozen=True, slots=True)
class Spooled:
    """An item with where it ends in its spool file (``file`` None: not spooled)."""

    item: Item
    file: str | None = None
    end: int = 0


class UnknownVersion(ValueError):
    """A spool record written by a newer version of the daemon: not ours to read or skip."""


class BadRecord(ValueError):
    """A spool record that is not one: damaged JSON, an unknown kind, a field missing."""


def encode(item: Item) -> bytes:
    """One JSON line: the item's record (`probe.store.records`) of version `VERSION`."""
    return RECORDS.dump_json(record_of(item)) + b"\n"


def decode(line: bytes) -> Item:
    """The item of one JSON line; `UnknownVersion` or `BadRecord` if it is not one."""
    try:
        return RECORDS.validate_json(line).item()
    except ValidationError as exc:
        raise _refusal(line, exc) from None


def _refusal(line: bytes, exc: ValidationError) -> ValueError:
    """Why ``line`` was refused: a version this daemon does not read, or damage."""
    try:
        data = json.loads(line)
    except ValueError:
        return BadRecord(f"not JSON: {line[:80]!r}")
    if not isinstance(data, dict):
        return BadRecord(f"not a JSON object: {line[:80]!r}")
    version = data.get("v", 1)  # records before versions were version 1
    if version != VERSION:
        return UnknownVersion(f"spool record version {version!r}; this daemon reads {VERSION}")
    kind = data.get("k")
    problems = "; ".join(
        _problem(error, kind) for error in exc.errors(include_url=False, include_input=False)
    )
    return BadRecord(f"invalid {kind or 'untyped'!r} record: {problems}")


def _problem(error: ErrorDetails, kind: object) -> str:
    """``field: message`` (the kind, which the union puts first, left out)."""
    loc = error["loc"][1:] if error["loc"][:1] == (kind,) else error["loc"]
    where = ".".join(str(part) for part in loc)
    return f"{where}: {error['msg']}" if where else error["msg"]


def read(
    path: Path,
    start: int,
    *,
    limit: int | None = None,
    skipped: Callable[[str], None] | None = None,
) -> Iterator[Spooled]:
    """The items of ``path`` after byte ``start``, each with where it ends.

    A last line without its newline was cut short by a power loss: it was never
    acknowledged to anyone, and is not read (`Spool.open` cuts such a tail off). A damaged
    line in the middle is logged and reported to ``skipped`` (so it is counted), and
    reading goes on, so one bad record cannot block the rest. A record of an unknown
    version raises `UnknownVersion`: it is not ours to skip.
    """
    count = 0
    with path.open("rb") as handle:
        handle.seek(start)
        position = start
        for line in handle:
            position += len(line)
            if not line.endswith(b"\n"):
                log.warning("spool_truncated_record", file=path.name, at=position - len(line))
                if skipped is not None:
                    skipped("spool_torn")
                return
            try:
                item = decode(line)
            except BadRecord as exc:
                log.error("spool_bad_record", file=path.name, at=position, error=str(exc)[:300])
                if skipped is not None:
                    skipped("spool_damaged")
                continue
            yield Spooled(item, path.name, position)
            count += 1
            if limit is not None and count >= limit:
                return


class Spool:
    """This process's spool file in ``directory``, and the orphans of dead processes."""

    def __init__(self, directory: Path, *, node: str = "") -> None:
        self.directory = directory
        self.node = _UNSAFE.sub("_", node)[:40]
        self.path: Path | None = None
        self.size = 0
        self.appended = 0  # records since start
        self._fd: int | None = None
        self._dirty = False
        self._sequence = 0
        self._orphans: dict[str, int] = {}  # name -> fd holding its lock
        self.torn = 0  # torn last records cut off the orphans at `open`

    @property
    def name(self) -> str:
        assert self.path is not None
        return self.path.name

    def open(self) -> list[Path]:
        """Create this process's file; return the orphans, locked for us to replay."""
        self.directory.mkdir(parents=True, exist_ok=True)
        orphans = []
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process owns it
                continue
            self._orphans[path.name] = fd
            self.torn += _cut_torn_tail(path, fd)
            orphans.append(path)
        self._new_file()
        return orphans

    def _new_file(self) -> None:
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        token = secrets.token_hex(4)  # names never repeat, whatever the clock and pid do
        name = f"spool-{self.node}-{stamp}-{os.getpid()}-{self._sequence}-{token}.jsonl"
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path, self._fd, self.size = path, fd, 0
        _fsync_directory(self.directory)

    def append(self, item: Item) -> Spooled:
        """Append one record; it survives this process from the moment this returns.

        An `OSError` (a full or failing disk) leaves the file as it was, with no part of
        the record in it.
        """
        assert self._fd is not None
        assert self.path is not None
        line = encode(item)
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk: the rest of the line, or an OSError
                os.write(self._fd, line[written:])
        except OSError:
            # Never leave a torn record: cut the file back to the end of the last whole one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(line)
        self.appended += 1
        self._dirty = True
        return Spooled(item, self.path.name, self.size)

    def sync(self) -> None:
        """fsync what was appended since the last call."""
        if self._dirty and self._fd is not None:
            self._dirty = False
            os.fsync(self._fd)

    def rotate(self) -> None:
        """Start a new file and delete the old one: call only when all of it is committed."""
        old = self.path
        if self._fd is not None:
            os.close(self._fd)
        self._new_file()
        if old is not None:
            old.unlink(missing_ok=True)

    def forget(self, name: str) -> None:
        """An orphan is replayed: delete it and let go of its lock."""
        fd = self._orphans.pop(name, None)
        (self.directory / name).unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)

    def close(self, *, committed: bool) -> None:
        """Close this process's file; delete it if everything in it is committed."""
        for name in list(self._orphans):
            with contextlib.suppress(OSError):
                os.close(self._orphans.pop(name))
        if self._fd is None:
            return
        self.sync()
        os.close(self._fd)
        self._fd = None
        if committed and self.path is not None:
            self.path.unlink(missing_ok=True)


def _cut_torn_tail(path: Path, fd: int) -> int:
    """Cut a last record without its newline (its write was cut short); 1 if there was one.

    Nobody was told it was stored, so nothing is lost: the probe it belonged to is resumed
    from what is whole.
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    with path.open("rb") as handle:
        handle.seek(max(0, size - 1))
        if handle.read(1) == b"\n":
            return 0
        keep, position = 0, 0
        handle.seek(0)
        for line in handle:
            position += len(line)
            if line.endswith(b"\n"):
                keep = position
    os.ftruncate(fd, keep)
    log.warning("spool_torn_tail_cut", file=path.name, bytes=size - keep)
    return 1


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
