"""The pull store: last pull time and count per (registry, repository, digest), when collection
started per registry, detected gaps and the receiver's heartbeat.

Embedded SQLite by default (``sqlite:///<stateDir>/pulls.sqlite``, WAL mode: gc reads while the
receiver writes); PostgreSQL by URL (``postgresql://...``, needs the ``psycopg`` driver). Times
are stored as UNIX seconds (float) in both. One envelope = one transaction (:meth:`record`).

Counts are at-least-once: distribution retries an envelope whose answer it did not get, so a
lost answer can count a pull twice; the last-pull time is exact either way.
"""

import os
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, RegkeeperError
from ..util import redact_url, scrub
from .events import PullEvent
from .history import Gap, PullHistory

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS pulls (
        registry TEXT NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL,
        last_pull DOUBLE PRECISION NOT NULL, pull_count BIGINT NOT NULL,
        last_tag TEXT, last_user_agent TEXT,
        PRIMARY KEY (registry, repository, digest))""",
    """CREATE TABLE IF NOT EXISTS collection (
        registry TEXT PRIMARY KEY, started DOUBLE PRECISION NOT NULL,
        last_event DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS gaps (
        registry TEXT NOT NULL, start_at DOUBLE PRECISION NOT NULL,
        end_at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL)""",
    # pulls per UTC day (day = UNIX days): the history a backtest replays (issue 13 part 4)
    """CREATE TABLE IF NOT EXISTS pull_days (
        registry TEXT NOT NULL, repository TEXT NOT NULL, digest TEXT NOT NULL,
        day BIGINT NOT NULL, pull_count BIGINT NOT NULL,
        PRIMARY KEY (registry, repository, digest, day))""",
    """CREATE TABLE IF NOT EXISTS heartbeat (
        receiver TEXT PRIMARY KEY, alive DOUBLE PRECISION NOT NULL)""",
    # the ids of the pull events stored lately: distribution sends an envelope again when its
    # answer was late or lost, and a pull must not count twice (kept SEEN_RETENTION)
    """CREATE TABLE IF NOT EXISTS events_seen (
        registry TEXT NOT NULL, event_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (registry, event_id))""",
]

_UPSERT = """INSERT INTO pulls (registry, repository, digest, last_pull, pull_count, last_tag, last_user_agent)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (registry, repository, digest) DO UPDATE SET
  pull_count = pulls.pull_count + excluded.pull_count,
  last_tag = CASE WHEN excluded.last_pull >= pulls.last_pull THEN excluded.last_tag ELSE pulls.last_tag END,
  last_user_agent = CASE WHEN excluded.last_pull >= pulls.last_pull
                    THEN excluded.last_user_agent ELSE pulls.last_user_agent END,
  last_pull = {greatest}(pulls.last_pull, excluded.last_pull)"""
_COLLECTION = """INSERT INTO collection (registry, started, last_event) VALUES (?, ?, ?)
ON CONFLICT (registry) DO UPDATE SET last_event = {greatest}(collection.last_event, excluded.last_event)"""
_DAYS = """INSERT INTO pull_days (registry, repository, digest, day, pull_count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (registry, repository, digest, day) DO UPDATE SET pull_count = pull_days.pull_count + excluded.pull_count"""
_SEEN = "INSERT INTO events_seen (registry, event_id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
RECEIVER = "receiver"
DAY = 86400
SEEN_RETENTION = timedelta(days=2)


class Recorded(NamedTuple):
    rows: int  # (repository, digest) rows written
    duplicates: int  # pulls whose event id was stored before (a resent envelope): not counted


def _aggregate(pulls: Iterable[PullEvent]) -> tuple[dict, dict]:
    """(repository, digest) -> [last pull, count, its tag, its user agent], and (repository,
    digest, UTC day) -> count: one envelope's rows."""
    agg: dict[tuple[str, str], list] = {}
    days: dict[tuple[str, str, int], int] = {}
    for p in pulls:
        row = agg.get((p.repository, p.digest))
        t = p.at.timestamp()
        dk = (p.repository, p.digest, int(t // DAY))
        days[dk] = days.get(dk, 0) + 1
        if row is None:
            agg[(p.repository, p.digest)] = [t, 1, p.tag, p.user_agent]
        else:
            row[1] += 1
            if t >= row[0]:
                row[0], row[2], row[3] = t, p.tag, p.user_agent
    return agg, days


def _ts(t: datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _dt(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(float(x), UTC)


class PullStore:
    """``PullStore(url)``; thread-safe (one connection behind a lock: writes are serialized by
    the database anyway)."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        if url.startswith("sqlite:///"):
            self.kind = "sqlite"
            try:
                self._conn: Any = _sqlite(url[len("sqlite://") :])
            except (OSError, sqlite3.Error) as e:
                raise RegkeeperError(f"pull store {url}: cannot open: {e}") from None
            self._greatest = "max"
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgresql"
            self._conn = _postgres(url)
            self._greatest = "GREATEST"
        else:
            raise ConfigError(
                f"pulls.store: unsupported URL {url.split('://')[0]}:// (sqlite:/// or postgresql://)"
            )
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    # ------------------------------------------------------------------ plumbing

    def _q(self, sql: str) -> str:
        sql = sql.replace("{greatest}", self._greatest)
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    def _tx(self, write: bool = True):
        store = self

        class _Tx:
            def __enter__(self):
                store._lock.acquire()
                self.cur = store._conn.cursor()
                if store.kind == "sqlite":
                    self.cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                return self.cur

            def __exit__(self, et, ev, tb):
                try:
                    if et is None:
                        store._conn.commit()
                    else:
                        store._conn.rollback()
                except _db_errors() as e:  # a failed COMMIT: the same named error as a query's
                    ev = ev or e
                finally:
                    self.cur.close()
                    store._reconnect_if_broken()
                    store._lock.release()
                if ev is not None and isinstance(ev, _db_errors()):
                    raise store.error(ev) from None

        return _Tx()

    def _reconnect_if_broken(self) -> None:
        """A PostgreSQL connection lost (server restart, failover) is replaced for the next call
        (the receiver answered this envelope 503: the registry retries it)."""
        if self.kind == "postgresql" and getattr(self._conn, "broken", False):
            try:
                self._conn.close()
            finally:
                self._conn = _postgres(self.url)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def error(self, e: BaseException) -> RegkeeperError:
        """A database error, named by the store (password redacted) instead of the driver's
        bare exception reaching the user."""
        first = (scrub(str(e)).strip().splitlines() or [type(e).__name__])[0]  # not the SQL echo
        return RegkeeperError(f"pull store {redact_url(self.url)}: {first}")

    # ------------------------------------------------------------------ writes

    def record(self, registry: str, pulls: Iterable[PullEvent], now: datetime) -> Recorded:
        """Store one envelope's pulls in one transaction (aggregated per digest first); the
        registry's collection starts at its first envelope (``now``, the receive time). A pull
        whose event id was stored before (the envelope sent again) is not counted again."""
        n = _ts(now)
        with self._tx() as cur:
            fresh, dup = self._unseen(cur, registry, list(pulls), n)
            agg, days = _aggregate(fresh)
            cur.execute(self._q(_COLLECTION), (registry, n, n))
            if agg:
                cur.executemany(self._q(_UPSERT), [(registry, r, d, *v) for (r, d), v in agg.items()])
                cur.executemany(self._q(_DAYS), [(registry, *k, c) for k, c in days.items()])
        return Recorded(len(agg), dup)

    def _unseen(self, cur, registry: str, pulls: list[PullEvent], now: float) -> tuple[list[PullEvent], int]:
        """(the pulls not stored before, how many were): each event id is inserted in the same
        transaction; one already there (or being stored by a concurrent delivery, which the
        database serializes on the key) inserts no row."""
        out, dup, sql = [], 0, self._q(_SEEN)
        for p in pulls:
            if p.event_id:
                cur.execute(sql, (registry, p.event_id, now))
                if cur.rowcount == 0:
                    dup += 1
                    continue
            out.append(p)
        return out, dup

    def prune_seen(self, before: datetime) -> int:
        """Forget event ids stored before ``before`` (a resend comes within minutes)."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM events_seen WHERE at < ?"), (_ts(before),))
            return int(cur.rowcount or 0)

    def mark_collection_start(self, registry: str, at: datetime) -> None:
        """Set when collection started for a registry (an operator backfilling history from
        logs, or tests simulating time)."""
        t = _ts(at)
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM collection WHERE registry = ?"), (registry,))
            cur.execute(self._q("INSERT INTO collection VALUES (?, ?, ?)"), (registry, t, t))

    def record_pull(
        self,
        registry: str,
        repository: str,
        digest: str,
        at: datetime,
        tag: str | None = None,
        user_agent: str = "",
    ) -> None:
        """One pull at a given time, outside an envelope (backfill, tests)."""
        with self._tx() as cur:
            cur.execute(self._q(_UPSERT), (registry, repository, digest, _ts(at), 1, tag, user_agent))
            cur.execute(self._q(_DAYS), (registry, repository, digest, int(_ts(at) // DAY), 1))

    def prune_days(self, before: datetime) -> int:
        """Drop the per-day pull counts of days before ``before`` (``pulls.dayRetention``); the
        last pull per image (``pulls``) is kept. Returns the rows dropped."""
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM pull_days WHERE day < ?"), (int(_ts(before) // DAY),))
            return int(cur.rowcount or 0)

    def add_gap(self, registry: str, start: datetime, end: datetime, reason: str) -> None:
        with self._tx() as cur:
            cur.execute(
                self._q("INSERT INTO gaps VALUES (?, ?, ?, ?)"), (registry, _ts(start), _ts(end), reason)
            )

    def heartbeat(self, now: datetime) -> None:
        with self._tx() as cur:
            cur.execute(self._q("DELETE FROM heartbeat WHERE receiver = ?"), (RECEIVER,))
            cur.execute(self._q("INSERT INTO heartbeat VALUES (?, ?)"), (RECEIVER, _ts(now)))

    def receiver_started(self, now: datetime, tolerance_s: float) -> list[Gap]:
        """Called when a receiver starts: a heartbeat older than the tolerance means the receiver
        was down (events the registry dropped meanwhile are lost: a registry restart empties its
        retry queue), recorded as a gap for every registry collected so far. Then beats."""
        gaps: list[Gap] = []
        with self._tx() as cur:
            cur.execute(self._q("SELECT alive FROM heartbeat WHERE receiver = ?"), (RECEIVER,))
            row = cur.fetchone()
            if row is not None and _ts(now) - float(row[0]) > tolerance_s:
                cur.execute("SELECT registry FROM collection")
                for (reg,) in cur.fetchall():
                    cur.execute(
                        self._q("INSERT INTO gaps VALUES (?, ?, ?, ?)"),
                        (reg, float(row[0]), _ts(now), "receiver down"),
                    )
                    gaps.append(Gap(_dt(row[0]), now, "receiver down"))  # type: ignore[arg-type]
            cur.execute(self._q("DELETE FROM heartbeat WHERE receiver = ?"), (RECEIVER,))
            cur.execute(self._q("INSERT INTO heartbeat VALUES (?, ?)"), (RECEIVER, _ts(now)))
        return gaps

    # ------------------------------------------------------------------ reads

    def history(self, registry: str, tolerance_s: float = 600.0) -> PullHistory:
        """Everything the planner needs for one registry, read once per run."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q("SELECT repository, digest, last_pull FROM pulls WHERE registry = ?"), (registry,)
            )
            last = {(r, d): _dt(t) for r, d, t in cur.fetchall()}
            cur.execute(self._q("SELECT started, last_event FROM collection WHERE registry = ?"), (registry,))
            row = cur.fetchone()
            cur.execute(self._q("SELECT start_at, end_at, reason FROM gaps WHERE registry = ?"), (registry,))
            gaps = [Gap(_dt(a), _dt(b), why) for a, b, why in cur.fetchall()]  # type: ignore[arg-type]
            cur.execute(self._q("SELECT alive FROM heartbeat WHERE receiver = ?"), (RECEIVER,))
            hb = cur.fetchone()
        return PullHistory(
            registry,
            last,  # type: ignore[arg-type]
            _dt(row[0]) if row else None,
            gaps,
            _dt(hb[0]) if hb else None,
            timedelta(seconds=tolerance_s),
            _dt(row[1]) if row else None,
        )

    def pull_days(
        self, registry: str, since: datetime | None = None
    ) -> dict[tuple[str, str], list[tuple[date, int]]]:
        """(repository, digest) -> [(UTC day, pulls that day)] in day order, from ``since``."""
        first = int(_ts(since) // DAY) if since is not None else 0
        sql = "SELECT repository, digest, day, pull_count FROM pull_days WHERE registry = ? AND day >= ? ORDER BY 3"
        with self._tx(write=False) as cur:
            cur.execute(self._q(sql), (registry, first))
            out: dict[tuple[str, str], list[tuple[date, int]]] = {}
            for r, d, day, n in cur.fetchall():
                out.setdefault((r, d), []).append((date(1970, 1, 1) + timedelta(days=int(day)), int(n)))
        return out

    def rows(self, registry: str) -> list[dict]:
        """Every stored pull of a registry (for reports and tests)."""
        cols = ["repository", "digest", "last_pull", "pull_count", "last_tag", "last_user_agent"]
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(f"SELECT {', '.join(cols)} FROM pulls WHERE registry = ? ORDER BY 1, 2"), (registry,)
            )
            out = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for r in out:
            r["last_pull"] = _dt(r["last_pull"])
        return out


def _sqlite(path: str):
    p = Path(os.path.expanduser(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return _AutoTx(conn)


class _AutoTx:
    """sqlite3 in autocommit mode with explicit BEGIN/COMMIT (the module's implicit transactions
    would not cover the upsert batch as one)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def cursor(self):
        return self.conn.cursor()

    def commit(self):
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self):
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self):
        self.conn.close()


def _db_errors() -> tuple[type[BaseException], ...]:
    """The database drivers' error types (psycopg's only when it is installed)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def _postgres(url: str):
    try:
        import psycopg
    except ImportError:
        raise ConfigError(
            "pulls.store: postgresql:// needs the psycopg driver (pip install 'psycopg[binary]')"
        ) from None
    try:
        return psycopg.connect(url, autocommit=False, connect_timeout=10)
    except psycopg.Error as e:
        why = " ".join(scrub(str(e)).split())  # libpq's hint lines: one line, the user's last
        raise RegkeeperError(f"pull store {redact_url(url)}: cannot connect: {why}") from None
