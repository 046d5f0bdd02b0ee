"""Database connections for the history: SQLite or PostgreSQL behind one small interface.

Only connection-level statements live here (SQLite's PRAGMAs, ``BEGIN IMMEDIATE``); every
query is in ``_history``. Driver errors become one line that names the history with its
password masked.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import BulkRetryError, HistoryError, UsageError
from ._history_location import HistoryLocation

if TYPE_CHECKING:
    from pathlib import Path

    import psycopg

T = TypeVar("T")
Values = dict[str, Any] | list[Any]

_TRANSIENT = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_RETRIES = 5
REPLACED = "the file was removed or replaced while this job ran"
CONNECT_TIMEOUT = 10
"""Seconds to reach a PostgreSQL server before the job gives up (exit 2)."""
CHECKPOINT_EVERY = 0.25
"""Seconds between a job's background checkpoints of a SQLite history (fewer copies of a page
written again and again than at 50 ms, for a WAL that is larger meanwhile)."""
CHECKPOINT_FALLBACK = 10_000
"""WAL pages after which a commit checkpoints by itself (SQLite's default is 1,000)."""


class Db:
    """A connection and its dialect: SQLite's ``:name`` parameters become psycopg's."""

    def __init__(
        self, connection: sqlite3.Connection | psycopg.Connection[Any], *, path: Path | None = None
    ) -> None:
        self._connection = connection
        self._sqlite = isinstance(connection, sqlite3.Connection)
        self._path = path
        """A SQLite file this connection writes (None: PostgreSQL, or read only)."""
        self._within = False
        """Inside ``transaction`` (PostgreSQL): a deadlock's retry is the whole transaction's."""
        self._file = _identity(path) if path is not None else None
        """Which file that was when opened: a write checks it is still the one at ``path``."""

    @property
    def identity(self) -> tuple[int, int] | None:
        """The SQLite file's device and inode when opened (None: PostgreSQL)."""
        return self._file

    def execute(self, sql: str, values: Values) -> list[Any]:
        """A statement's rows; values by ``:name`` (a dict) or by ``?N`` (a list)."""
        if self._sqlite:
            assert isinstance(self._connection, sqlite3.Connection)
            return self._connection.execute(sql, values).fetchall()
        cursor = self._connection.execute(_pg(sql), _named(values))
        return cursor.fetchall() if cursor.description is not None else []

    def change(self, sql: str, values: Values) -> int:
        """A statement that writes, run to its end: how many rows it wrote.

        Outside a transaction it is a transaction of its own: when PostgreSQL picks it as a
        deadlock's victim, nothing of it was written, and it is run again alone.
        """
        if self._sqlite:
            assert isinstance(self._connection, sqlite3.Connection)
            return self._connection.execute(sql, values).rowcount
        connection = self._connection
        if self._within:
            return connection.execute(_pg(sql), _named(values)).rowcount
        return self.retrying(lambda: connection.execute(_pg(sql), _named(values)).rowcount)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """SQLite: take the write lock at once (BEGIN IMMEDIATE), so two writers never deadlock."""
        if not self._sqlite:
            self._within = True
            try:
                with self._connection.transaction():  # type: ignore[union-attr]
                    yield
            finally:
                self._within = False
            return
        connection = self._connection
        assert isinstance(connection, sqlite3.Connection)
        connection.execute("BEGIN IMMEDIATE")
        try:
            self.still_there()
            yield
        except BaseException:
            connection.rollback()
            raise
        connection.commit()

    def still_there(self) -> None:
        """Refuse to write into a file removed or replaced since the job opened it.

        Its records would be lost with it, and the next job would send every run again.
        Called by ``transaction``, and before a group commit's statements (each one its own
        transaction).
        """
        if self._path is not None and _identity(self._path) != self._file:
            raise sqlite3.DatabaseError(REPLACED)

    def retrying(self, work: Callable[[], T]) -> T:
        """Run a transaction, again when PostgreSQL chose it as a deadlock's victim."""
        for _ in range(_RETRIES):
            try:
                return work()
            except Exception as exc:
                if getattr(exc, "sqlstate", None) not in _TRANSIENT:
                    raise
        return work()

    def close(self) -> None:
        self._connection.close()

    def checkpointer(self) -> Callable[[threading.Event], None] | None:
        """SQLite: what copies the WAL back into the file from a thread of its own until told.

        That copy and its ``fsync`` would otherwise fall, every thousand pages, on a commit
        that claims waits for. Its own connection; this one's checkpoints become the fallback
        (every 10,000 pages) for when it falls behind. None for PostgreSQL or a read-only file.
        """
        path = self._path
        if path is None:
            return None
        assert isinstance(self._connection, sqlite3.Connection)
        self._connection.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_FALLBACK}")

        def run(stop: threading.Event) -> None:
            # Never an error from here: the fallback checkpoints, and the writer's commits
            # report what is really wrong with the history.
            try:
                connection = sqlite3.connect(
                    _existing(path), uri=True, isolation_level=None, timeout=30
                )
            except sqlite3.Error:
                return
            try:
                connection.execute("PRAGMA synchronous=NORMAL")
                while not stop.wait(CHECKPOINT_EVERY):
                    try:
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    except sqlite3.OperationalError:
                        continue  # busy with another job's checkpoint: next time
            except sqlite3.Error:
                return
            finally:
                connection.close()

        return run


@functools.cache
def _pg(sql: str) -> str:
    """Psycopg's placeholders: ``:name`` → ``%(name)s``, ``?N`` → ``%(pN)s``."""
    return re.sub(r"\?(\d+)", r"%(p\1)s", re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql))


def _named(values: Values) -> dict[str, Any]:
    if isinstance(values, dict):
        return values
    return {f"p{number}": value for number, value in enumerate(values, 1)}


def connect_sqlite(location: HistoryLocation, *, write: bool, create: bool = True) -> Db | None:
    """A connection to the history file; ``create=False`` opens only the file already there."""
    path = location.path
    assert path is not None
    if not write:
        if not path.exists():
            return None  # a dry run creates nothing
        # Read only, and without even the shared-memory file unless a writer is using it:
        # "immutable" when there is no write-ahead log to read.
        live = path.with_name(path.name + "-wal").exists()
        uri = path.absolute().as_uri() + ("?mode=ro" if live else "?immutable=1")
        return Db(sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"history {location}: cannot create its directory {path.parent}: {exc.strerror}"
        ) from None
    # A group commit's statements differ by their row count: keep them all compiled.
    connection = sqlite3.connect(
        path if create else _existing(path),
        uri=not create,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
        cached_statements=1024,
    )
    try:
        # WAL: a commit is a write() to the log (it reaches the OS, survives kill -9); the
        # fsync comes at checkpoints, like the journal's grouped fsync.
        _wal(connection)
        connection.execute("PRAGMA synchronous=NORMAL")
        # A group commit's multi-row statements sort and join in small temporary tables: in
        # memory, not a file created and unlinked for each statement.
        connection.execute("PRAGMA temp_store=MEMORY")
    except BaseException:
        connection.close()
        raise
    return Db(connection, path=path)


def _wal(connection: sqlite3.Connection) -> None:
    """Switch to WAL; the switch skips the busy handler, so a first use racing another waits."""
    for _ in range(200):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
        else:
            return
    connection.execute("PRAGMA journal_mode=WAL")


def connect_pg(location: HistoryLocation) -> psycopg.Connection[Any]:
    try:
        import psycopg  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise UsageError(
            "a postgresql:// history needs the postgres extra: pip install 'bulkretry[postgres]'"
        ) from None
    assert location.url is not None
    # autocommit: each ``transaction()`` is a real BEGIN … COMMIT, never a savepoint inside
    # an implicit transaction left open by a read.
    return psycopg.connect(location.url.reveal(), connect_timeout=CONNECT_TIMEOUT, autocommit=True)


@contextmanager
def mapped(
    location: HistoryLocation, *, usage: bool = False, everything: bool = False
) -> Iterator[None]:
    """Driver errors → one line naming the history (password masked), never a traceback.

    ``usage``: at start (exit 2, nothing sent); otherwise mid-job (``HistoryError``, exit 1).
    ``everything``: any other error too (a bug), named by its type: a group commit that fails
    in any way stops the job the same way, and none of its waiters hangs.
    """
    try:
        yield
    except BulkRetryError:
        raise
    except Exception as exc:
        driver = isinstance(exc, sqlite3.Error | OSError | OverflowError) or type(
            exc
        ).__module__.startswith("psycopg")  # OverflowError: a number sqlite3 cannot bind
        if not (driver or everything):
            raise
        # The driver's own words may quote the URL (a URI it cannot parse): never shown.
        text = _describe(exc) if driver else f"{type(exc).__name__}: {exc}"
        raise (UsageError if usage else HistoryError)(location.failure(text)) from None


def _existing(path: Path) -> str:
    """A URI that opens the file at ``path`` for writing, never creating it."""
    return path.absolute().as_uri() + "?mode=rw"


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's device and inode, or None when nothing is there."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if text == "file is not a database":
        text = "not a SQLite database (pass another --history, or 'off')"
    elif text == "unable to open database file" or "readonly" in text:
        text += " (is its directory writable? pass another --history, or 'off')"
    return text
