"""``kv`` with ``store_method: file_based``: durable state in SQLite (spec/state.md §8.3, D1).

Design:

* **One writer thread** owns the SQLite connection (WAL, ``synchronous=FULL``). It runs jobs handed
  over from the event loop and reports back with ``call_soon_threadsafe``. An exclusive ``flock`` on
  ``<database>.lock`` makes a second engine fail to open the same database (§8.3 rule 7; the kernel
  drops it when the process dies, ``kill -9`` included).
* **WAL checkpoints off the commit path.** SQLite's automatic checkpoint runs inside the commit that
  crosses 1,000 WAL pages and made that commit take about 2 ms instead of 0.1 ms: with two commits
  per todo that was 0.5 % of commits, and the p99 of everything waiting on a commit (replies and
  triggers). Here the automatic checkpoint is off and a second thread with its own connection runs
  ``wal_checkpoint(PASSIVE)`` after every ``CHECKPOINT_AFTER_WRITES`` rows written, concurrently with
  commits (a passive checkpoint never blocks the writer). If the WAL still grows past
  ``WAL_RESTART_FRAMES`` (writes faster than checkpoints), the writer itself runs a ``RESTART``
  checkpoint between two batches.
* **Rows keyed by position** (``_SCHEMA``): one B-tree, appended to by new keys; the keyspace in
  memory maps keys to positions. Databases of the earlier schema are converted on open.
* **Group commit.** Writes queue up on the loop; whenever the writer is idle, everything queued goes
  to it as one batch: one transaction, one fsync. Writes arriving meanwhile form the next batch, so a
  commit is never delayed to wait for more writes (§8.3 rule 3). A batch writes each row (position)
  once, in its last state (a hot counter updated 20 times in a batch costs one row, not 20).
* **Computing on the loop.** A write is computed (previous value, new value, position) on the event
  loop against the newest state of its key: the latest queued write if any (the *overlay*), else the
  committed data. Being synchronous, that is atomic per key, and a batch applies its writes in
  order.
* **Reads see only committed data** (C7): the committed contents live in a :class:`Keyspace`, updated
  when a batch has committed, right before its callers are answered (in batch order, so writes to one
  key return in commit order: contract rule 2). The whole store is therefore held in memory, as the
  reference's kv store does.
* **Failure.** If a commit fails, its writes fail, and so does every queued write to one of their
  keys (it was computed on top of a write that never happened); nothing of them becomes visible.

``save_interval_ms`` is accepted and unused (§8.3 rule 5): every commit is already durable, and
checkpoints follow the amount written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..errors import StateStartupError, StoreError
from .base import Compute, Entry, StateAdapter
from .keyspace import Keyspace

log = logging.getLogger("pyiii.state")

#: Name of the database inside a ``file_path`` directory (config-cli-modules.md §2.6 rule 1).
DB_FILE_NAME: Final = "pyiii-state.sqlite3"

#: The rows are keyed by their position: a key's position is unique (one clock per store) and
#: stable while the key exists, and the in-memory keyspace knows it, so the database needs no index
#: of its own. A new key appends to the end of one B-tree. (The schema suggested by state.md §8.3,
#: ``PRIMARY KEY (scope, key)`` plus an index on ``(scope, pos)``, updates three B-trees at random
#: places per new key: 19 against 9 µs of CPU per todo and 2.7 times the WAL volume, measured on the
#: todo app's writes; databases in that schema are converted when opened, ``_migrate``.)
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (pos INTEGER PRIMARY KEY, scope TEXT NOT NULL, key TEXT NOT NULL,"
    " value TEXT NOT NULL)",
)
_PUT: Final = "INSERT OR REPLACE INTO state (pos, scope, key, value) VALUES (?, ?, ?, ?)"
_DELETE: Final = "DELETE FROM state WHERE pos = ?"
_SET_CLOCK: Final = "INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)"

_Key = tuple[str, str]

#: Rows written since the last checkpoint after which the checkpointer thread runs one (a row is a
#: few WAL pages; SQLite's own automatic checkpoint runs every 1,000 pages).
CHECKPOINT_AFTER_WRITES: Final = 256
#: WAL frames past which the writer runs a ``RESTART`` checkpoint itself (about 100 MB of 4 KiB pages;
#: under sustained load the WAL levels off far below: 35 MB at 6,700 todos/s here).
WAL_RESTART_FRAMES: Final = 25_000
#: The WAL file is truncated to this size when it restarts.
WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024


def resolve_db_path(file_path: str, db_file_name: str = DB_FILE_NAME, label: str = "state") -> Path:
    """§8.3: an existing regular file is the database; anything else is a directory (created) holding
    ``db_file_name`` (``pyiii-state.sqlite3``; streams use their own name, stream.md §7.1.3). Reference
    ``*.bin`` files there are left alone, with a warning. ``label`` names the module in messages."""
    path = Path(file_path)
    if path.is_file():
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateStartupError(f"{label} file_path '{file_path}': cannot create directory: {exc}") from exc
    stale = sorted(p.name for p in path.glob("*.bin"))
    if stale:
        log.warning(
            "%s file_path '%s' holds files of the reference engine's format (%s); pyiii does not "
            "read them and starts from its own database %s",
            label,
            file_path,
            ", ".join(stale),
            db_file_name,
        )
    return path / db_file_name


class _Write:
    """One queued write. ``value`` is ``None`` for a delete."""

    __slots__ = ("future", "key", "old", "position", "scope", "value")

    def __init__(
        self,
        scope: str,
        key: str,
        position: int,
        value: bytes | None,
        old: bytes | None,
        future: asyncio.Future[bytes | None],
    ) -> None:
        self.scope = scope
        self.key = key
        self.position = position
        self.value = value
        self.old = old
        self.future = future


def _migrate(conn: sqlite3.Connection) -> None:
    """Convert a database of the earlier schema (``state`` keyed by ``(scope, key)``, an index on
    ``(scope, pos)``) to rows keyed by position, inside the caller's transaction. Positions are kept;
    one that two rows share (never written by pyiii, but possible in a hand-edited file) goes to the
    later row and the earlier one gets a new position after every other."""
    found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'state'").fetchone()
    if found is None or "PRIMARY KEY (scope, key)" not in found[0]:
        return
    rows = conn.execute("SELECT scope, key, pos, value FROM state ORDER BY pos, scope, key").fetchall()
    log.info("converting %d rows of %s to rows keyed by position", len(rows), "the state table")
    conn.execute("ALTER TABLE state RENAME TO state_v1")
    conn.execute("DROP INDEX IF EXISTS state_by_pos")
    conn.execute(_SCHEMA[1])
    top = max((row[2] for row in rows), default=0)
    used: set[int] = set()
    moved: list[tuple[str, str, int, str]] = []
    for scope, key, pos, value in reversed(rows):  # the later of two rows keeps the position
        if pos in used:
            moved.append((scope, key, pos, value))
            continue
        used.add(pos)
        conn.execute(_PUT, (pos, scope, key, value))
    for scope, key, _, value in reversed(moved):
        top += 1
        conn.execute(_PUT, (top, scope, key, value))
    if moved:
        clock = conn.execute("SELECT value FROM meta WHERE name = 'clock'").fetchone()
        if clock is None or int(clock[0]) < top:
            conn.execute(_SET_CLOCK, (str(top),))
    conn.execute("DROP TABLE state_v1")


def _wal_checkpoint(conn: sqlite3.Connection | None, mode: str) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(<mode>)`` on ``conn``: (busy, frames in the WAL, frames checkpointed);
    zeros when the connection is already closed."""
    if conn is None:
        return (0, 0, 0)
    busy, frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return (int(busy), int(frames), int(done))


def _drop_duplicates(
    conn: sqlite3.Connection, rows: list[tuple[str, str, int, str]]
) -> list[tuple[str, str, int, str]]:
    """Rows in position order, one per key (its newest position); older rows of a key, which pyiii
    never leaves but a hand-edited file could hold, are deleted."""
    newest: dict[tuple[str, str], int] = {}
    for scope, key, pos, _ in rows:
        newest[(scope, key)] = pos
    if len(newest) == len(rows):
        return rows
    kept = [row for row in rows if newest[(row[0], row[1])] == row[2]]
    stale = {row[2] for row in rows} - {row[2] for row in kept}
    conn.executemany(_DELETE, [(pos,) for pos in stale])
    log.warning("dropped %d stale rows of keys stored twice", len(stale))
    return kept


class _WriterThread:
    """A thread running jobs ``fn(connection)`` in order; each outcome is reported on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        self._jobs.put((job, done))

    async def call(self, job: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()

        def done(result: Any, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

        self.submit(job, done)
        return await future

    async def stop(self) -> None:
        await self.call(self._close_connection)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _close_connection(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                break
            job, done = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = job()
            except BaseException as exc:
                error = exc
            try:
                self._loop.call_soon_threadsafe(done, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                break
            # Not kept alive while waiting for the next job (the last batch and its futures).
            item = job = done = result = error = None
        self._close_connection()


class SqliteAdapter(StateAdapter):
    """The durable embedded store (§8.3).

    ``db_file_name`` and ``label`` let another module reuse it (the stream module: its own database
    name inside a directory, its own name in messages); state uses the defaults.
    """

    awaits_only_futures = True

    def __init__(self, file_path: str, *, db_file_name: str = DB_FILE_NAME, label: str = "state") -> None:
        self.file_path = file_path
        self.db_file_name = db_file_name
        self.label = label
        self.db_path: Path | None = None
        self._committed = Keyspace()
        #: Newest queued state of keys with writes in flight: (position, value or None if deleted).
        self._overlay: dict[_Key, tuple[int, bytes | None]] = {}
        self._in_flight: dict[_Key, int] = {}
        self._clock = 0
        self._queue: list[_Write] = []
        self._committing = False
        self._closing = False
        self._drained: asyncio.Event | None = None
        self._writer: _WriterThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock_fd: int | None = None
        self._checkpointer: _WriterThread | None = None
        self._checkpointing = False
        self._since_checkpoint = 0
        self._restart_wal = False

    # -------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        self.db_path = resolve_db_path(self.file_path, self.db_file_name, self.label)
        self._loop = asyncio.get_running_loop()
        self._lock_fd = self._take_lock(self.db_path)
        self._writer = _WriterThread(self._loop, f"pyiii-{self.label}-writer")
        try:
            epoch, clock, rows = await self._writer.call(self._open_database)
        except BaseException as exc:
            await self._writer.stop()
            self._writer = None
            self._release_lock()
            if not isinstance(exc, sqlite3.Error):
                raise
            raise StateStartupError(
                f"cannot open the {self.label} database {self.db_path}: {exc}"
                + (" (is another pyiii engine using it?)" if "locked" in str(exc) else "")
            ) from exc
        self.epoch = epoch
        for scope, key, position, text in rows:
            self._committed.put(scope, key, position, text.encode())
        self._clock = max(clock, self._committed.max_position())
        self._checkpointer = _WriterThread(self._loop, f"pyiii-{self.label}-checkpointer")
        try:
            await self._checkpointer.call(self._open_checkpointer)
        except sqlite3.Error as exc:  # then the writer's own checkpoint between batches keeps the WAL bounded
            log.warning("%s store: no background checkpoints (%s)", self.label, exc)
            await self._checkpointer.stop()
            self._checkpointer = None
        log.info("%s store %s opened (%d keys)", self.label, self.db_path, len(rows))

    def _take_lock(self, db_path: Path) -> int:
        """§8.3 rule 7: an exclusive ``flock`` on ``<database>.lock``, held while the store is open."""
        lock_path = f"{db_path}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateStartupError(f"cannot open the {self.label} database {db_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateStartupError(
                f"cannot open the {self.label} database {db_path}: it is locked"
                " (is another pyiii engine using it?)"
            ) from None
        return fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def _open_checkpointer(self) -> None:
        """In the checkpointer thread: its own connection to the database."""
        assert self._checkpointer is not None
        conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False, timeout=0.5)
        self._checkpointer.connection = conn
        conn.execute("PRAGMA synchronous=FULL")

    def _checkpoint(self) -> tuple[int, int, int]:
        """In the checkpointer thread: copy committed WAL frames into the database, never blocking
        the writer."""
        assert self._checkpointer is not None
        return _wal_checkpoint(self._checkpointer.connection, "PASSIVE")

    def _maybe_checkpoint(self, written: int) -> None:
        """On the loop, after a commit: start a background checkpoint once enough was written."""
        self._since_checkpoint += written
        if self._checkpointing or self._since_checkpoint < CHECKPOINT_AFTER_WRITES:
            return
        if self._checkpointer is None:
            self._restart_wal = True  # no checkpointer thread: the writer does it between batches
            self._since_checkpoint = 0
            return
        self._checkpointing = True
        self._since_checkpoint = 0
        self._checkpointer.submit(self._checkpoint, self._checkpoint_done)

    def _checkpoint_done(self, result: Any, exc: BaseException | None) -> None:
        self._checkpointing = False
        if exc is not None:
            log.warning("%s store: background checkpoint failed: %s", self.label, exc)
            return
        _busy, frames, _done = result
        if frames > WAL_RESTART_FRAMES:
            self._restart_wal = True

    def _restart(self) -> None:
        """In the writer thread, between batches: checkpoint everything and restart the WAL."""
        assert self._writer is not None
        _wal_checkpoint(self._writer.connection, "RESTART")

    def _open_database(self) -> tuple[str, int, list[tuple[str, str, int, str]]]:
        """In the writer thread: open, lock, create the schema, load everything (§8.3 rules 6-7)."""
        assert self._writer is not None
        conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False, timeout=0.5)
        self._writer.connection = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it (module docstring)
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            _migrate(conn)
            for statement in _SCHEMA:
                conn.execute(statement)
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            epoch = meta.get("epoch")
            if epoch is None:
                epoch = uuid.uuid4().hex
                conn.execute("INSERT INTO meta (name, value) VALUES ('epoch', ?)", (epoch,))
            rows = conn.execute("SELECT scope, key, pos, value FROM state ORDER BY pos").fetchall()
            rows = _drop_duplicates(conn, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return str(epoch), int(meta.get("clock", 0)), rows

    async def close(self) -> None:
        """Stop accepting writes, wait for queued ones to commit, close the database."""
        if self._writer is None or self._closing:
            return
        self._closing = True
        if self._committing or self._queue:
            self._drained = asyncio.Event()
            await self._drained.wait()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await checkpointer.stop()  # after its last job: a running checkpoint finishes first
        with contextlib.suppress(sqlite3.Error):
            await self._writer.call(self._truncate_wal)
        await self._writer.stop()
        self._release_lock()

    def _truncate_wal(self) -> None:
        """In the writer thread, at close: everything into the database, an empty WAL left."""
        assert self._writer is not None
        _wal_checkpoint(self._writer.connection, "TRUNCATE")

    # -------------------------------------------------------------- reads (committed data only)

    async def get(self, scope: str, key: str) -> bytes | None:
        entry = self._committed.get(scope, key)
        return None if entry is None else entry[1]

    async def list_items(self, scope: str) -> list[tuple[str, bytes]]:
        return self._committed.items(scope)

    async def list_keys(self, scope: str) -> list[str]:
        return self._committed.keys(scope)

    async def list_after(self, scope: str, after: int, limit: int) -> list[Entry]:
        return self._committed.after(scope, after, limit)

    async def list_groups(self) -> list[str]:
        return self._committed.scopes()

    # -------------------------------------------------------------- writes

    async def set(self, scope: str, key: str, value: bytes) -> bytes | None:
        position, old = self._current(scope, key)
        return await self._enqueue(scope, key, position, value, old)

    async def delete(self, scope: str, key: str) -> bytes | None:
        position, old = self._current(scope, key)
        return await self._enqueue(scope, key, position, None, old)

    async def update(self, scope: str, key: str, compute: Compute) -> tuple[bytes | None, bytes]:
        position, old = self._current(scope, key)
        new = compute(old)
        await self._enqueue(scope, key, position, new, old)
        return old, new

    def _current(self, scope: str, key: str) -> tuple[int, bytes | None]:
        """The newest state of a key, committed or queued: (its position or a new one, value)."""
        if self._closing:
            raise StoreError("the state store is closed")
        entry = self._overlay.get((scope, key)) or self._committed.get(scope, key)
        if entry is None or entry[1] is None:
            self._clock += 1
            return self._clock, None
        return entry

    def _enqueue(
        self, scope: str, key: str, position: int, value: bytes | None, old: bytes | None
    ) -> asyncio.Future[bytes | None]:
        assert self._loop is not None
        future: asyncio.Future[bytes | None] = self._loop.create_future()
        sk = (scope, key)
        self._overlay[sk] = (position, value)
        self._in_flight[sk] = self._in_flight.get(sk, 0) + 1
        self._queue.append(_Write(scope, key, position, value, old, future))
        if not self._committing:
            self._flush()
        return future

    def _flush(self) -> None:
        assert self._writer is not None
        if self._restart_wal:
            self._restart_wal = False
            self._writer.submit(self._restart, self._restart_done)
        batch, self._queue = self._queue, []
        self._committing = True
        clock = self._clock

        def done(_result: Any, exc: BaseException | None) -> None:
            self._batch_done(batch, exc)

        self._writer.submit(lambda: self._commit_batch(batch, clock), done)

    def _commit_batch(self, batch: list[_Write], clock: int) -> None:
        """In the writer thread: one transaction for the whole batch, durable when it returns."""
        assert self._writer is not None
        conn = self._writer.connection
        if conn is None:
            raise sqlite3.OperationalError("the state database is closed")
        # Only a row's last write in the batch reaches the database: the transaction is atomic, so
        # nothing can observe the ones before it (a counter updated by 20 writes of one batch costs
        # one row). Rows are positions: a key deleted and set again in one batch is two rows (the
        # old position deleted, the new one written).
        last: dict[int, _Write] = {}
        for write in batch:
            last[write.position] = write
        # The clock is stored only by a batch that deletes: a reopened store takes the larger of it
        # and the highest stored position, so the only positions it must remember are those of
        # deleted rows (never reused, or a listing cursor would skip the key that got one again).
        # Writing it on every commit was two of a new key's three WAL pages (meta and its index):
        # the fsync of one page is about 50 µs faster than of three here.
        # Each row touches its own position, so the deletes and the puts can go in two statements
        # (``executemany``: no Python between rows).
        puts = [(w.position, w.scope, w.key, w.value.decode()) for w in last.values() if w.value is not None]
        deletes = [(w.position,) for w in last.values() if w.value is None]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                conn.executemany(_DELETE, deletes)
                conn.execute(_SET_CLOCK, (str(clock),))
            if puts:
                conn.executemany(_PUT, puts)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _restart_done(self, _result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            log.warning("%s store: WAL restart checkpoint failed: %s", self.label, exc)

    def _batch_done(self, batch: list[_Write], exc: BaseException | None) -> None:
        """On the loop: publish a committed batch to readers and answer its callers, in order."""
        self._committing = False
        if exc is None:
            self._maybe_checkpoint(len(batch))
            committed = self._committed
            for write in batch:
                if write.value is None:
                    committed.remove(write.scope, write.key)
                else:
                    committed.put(write.scope, write.key, write.position, write.value)
                self._settled((write.scope, write.key))
            for write in batch:
                if not write.future.done():
                    write.future.set_result(write.old)
        else:
            self._fail(batch, exc)
        if self._queue:
            self._flush()
        elif self._drained is not None:
            self._drained.set()

    def _settled(self, sk: _Key) -> None:
        remaining = self._in_flight[sk] - 1
        if remaining:
            self._in_flight[sk] = remaining
        else:
            del self._in_flight[sk]
            del self._overlay[sk]

    def _fail(self, batch: list[_Write], exc: BaseException) -> None:
        log.error("state commit of %d writes failed: %s", len(batch), exc)
        error = StoreError(f"commit failed: {exc}")
        failed_keys = {(write.scope, write.key) for write in batch}
        doomed = batch + [w for w in self._queue if (w.scope, w.key) in failed_keys]
        self._queue = [w for w in self._queue if (w.scope, w.key) not in failed_keys]
        # Rebuild the overlay from the writes still queued (they never touched a failed key).
        self._overlay.clear()
        self._in_flight.clear()
        for write in self._queue:
            sk = (write.scope, write.key)
            self._overlay[sk] = (write.position, write.value)
            self._in_flight[sk] = self._in_flight.get(sk, 0) + 1
        for write in doomed:
            if not write.future.done():
                write.future.set_exception(error)


__all__ = ["DB_FILE_NAME", "SqliteAdapter", "resolve_db_path"]
