"""Feeds a library follows: RSS/Atom URLs polled on a schedule, their state kept with the library.

The state (interval, ETag / Last-Modified, items seen, last poll, last error, next poll) lives in
one SQLite file in the library's folder (qa/library.py: library_part), so it survives restarts and
moves with the folder. Several processes may poll: a due feed is claimed with a lease in one
SQLite transaction, so one process fetches it and the others skip it; a lease whose process died
(same host, pid gone) or expired is taken over, and the poll resumes. An item is marked seen only
after its article is stored, and storing is idempotent (articles keyed by canonical URL and
content hash), so a poll killed halfway stores nothing twice on the next try.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from qa.errors import InputError

DEFAULT_EVERY_S = 15 * 60
LEASE_S = 15 * 60
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str | int | float) -> float:
    """Seconds from '15m', '1h', '90s', '1h30m' or a number of seconds; InputError otherwise."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        spec = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", spec):
            seconds = float(spec)
        elif spec and _DURATION_RE.sub("", spec).strip() == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_RE.findall(spec))
        else:
            raise InputError("--every", f"'{text}' is not an interval (use e.g. 90s, 15m, 1h)")
    if seconds < 1:
        raise InputError("--every", "the interval must be at least 1 second")
    return seconds


@dataclass
class FeedState:
    url: str
    every_s: float
    title: str = ""
    etag: str | None = None
    last_modified: str | None = None
    last_poll: float | None = None
    next_poll: float = 0.0
    last_status: str = ""  # "new items", "no new items", "not modified", "error"
    last_error: str | None = None
    last_added: int = 0
    items_added: int = 0
    items_seen: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_COLUMNS = "url, every_s, title, etag, last_modified, last_poll, next_poll, last_status, last_error, last_added, items_added"


class FeedBook:
    """The feeds of one library and what each has delivered."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # host:pid:book: a lease names its process (a dead one's is void) and its book (two pollers
        # in one process do not take each other's feeds)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS feeds (
                url TEXT PRIMARY KEY, every_s REAL NOT NULL, title TEXT DEFAULT '', etag TEXT,
                last_modified TEXT, last_poll REAL, next_poll REAL NOT NULL DEFAULT 0,
                last_status TEXT DEFAULT '', last_error TEXT, last_added INTEGER DEFAULT 0,
                items_added INTEGER DEFAULT 0, lease_owner TEXT, lease_until REAL);
            CREATE TABLE IF NOT EXISTS items (
                feed TEXT NOT NULL, key TEXT NOT NULL, article_id TEXT, seen REAL NOT NULL,
                PRIMARY KEY (feed, key));
        """)

    def close(self) -> None:
        self._db.close()

    # --- the list ----------------------------------------------------------------------------
    def add(self, url: str, every_s: float = DEFAULT_EVERY_S, title: str = "") -> FeedState:
        """Follow a feed (due at once); an existing one keeps its state and gets the new interval."""
        self._db.execute(
            "INSERT INTO feeds (url, every_s, title, next_poll) VALUES (?, ?, ?, 0) "
            "ON CONFLICT(url) DO UPDATE SET every_s = excluded.every_s, next_poll = MIN(next_poll, ? + excluded.every_s)",
            (url, every_s, title, time.time()))
        return self.get(url)

    def remove(self, url: str) -> bool:
        with self._transaction():
            gone = self._db.execute("DELETE FROM feeds WHERE url = ?", (url,)).rowcount
            self._db.execute("DELETE FROM items WHERE feed = ?", (url,))
        return bool(gone)

    def get(self, url: str) -> FeedState | None:
        found = [f for f in self.list() if f.url == url]
        return found[0] if found else None

    def list(self) -> list[FeedState]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM items WHERE items.feed = feeds.url) FROM feeds ORDER BY url").fetchall()
        return [FeedState(*row[:-1], items_seen=row[-1]) for row in rows]

    # --- polling -----------------------------------------------------------------------------
    def claim_due(self, now: float | None = None, lease_s: float = LEASE_S, only: list[str] | None = None) -> list[FeedState]:
        """The feeds due now, leased to this process (no other process claims them meanwhile).
        `only`: claim these feeds whatever their schedule (a poll asked for by hand)."""
        now = time.time() if now is None else now
        owner = self._owner
        with self._transaction():
            rows = self._db.execute("SELECT url, next_poll, lease_owner, lease_until FROM feeds").fetchall()
            claimed = []
            for url, next_poll, lease_owner, lease_until in rows:
                due = url in only if only is not None else next_poll <= now
                held = lease_until is not None and lease_until > now and lease_owner != owner and _alive(lease_owner)
                if due and not held:
                    claimed.append(url)
            for url in claimed:
                self._db.execute("UPDATE feeds SET lease_owner = ?, lease_until = ? WHERE url = ?", (owner, now + lease_s, url))
        return [f for f in self.list() if f.url in claimed]

    def seen_keys(self, url: str) -> set[str]:
        return {key for (key,) in self._db.execute("SELECT key FROM items WHERE feed = ?", (url,))}

    def mark_seen(self, url: str, items: list[tuple[str, str | None]]) -> None:
        """(item key, article id or None) pairs: done with these items."""
        now = time.time()
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO items (feed, key, article_id, seen) VALUES (?, ?, ?, ?)",
                                 [(url, key, article_id, now) for key, article_id in items])

    def finish(self, url: str, *, status: str, error: str | None = None, added: int = 0, etag: str | None = None,
               last_modified: str | None = None, title: str | None = None) -> None:
        """Record a poll and schedule the next; the lease ends. A conditional-request pair (ETag,
        Last-Modified) is kept only from a complete poll, so an interrupted one fetches in full."""
        now = time.time()
        self._db.execute(
            "UPDATE feeds SET last_poll = ?, next_poll = ? + every_s, last_status = ?, last_error = ?, last_added = ?, "
            "items_added = items_added + ?, etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified), "
            "title = COALESCE(?, title), lease_owner = NULL, lease_until = NULL WHERE url = ?",
            (now, now, status, error, added, added, etag, last_modified, title, url))

    def _transaction(self):
        return _Immediate(self._db)


class _Immediate:
    """BEGIN IMMEDIATE … COMMIT: the write lock is taken up front, so two processes' claims serialise."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *_):
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def _alive(owner: str | None) -> bool:
    """Whether a lease's owner may still be polling: a process of this host that is gone is not."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.split(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's: trust the lease until it expires
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def poll(book: FeedBook, ingester, fetcher, only: list[str] | None = None, report=print) -> list[tuple[str, object]]:
    """Poll the feeds that are due (or `only` these): a conditional GET each; the items not seen
    before are fetched as pages and stored (`ingester`: qa/ingest/pipeline.py). Returns
    (feed URL, IngestReport or the error's one-line reason) per feed polled."""
    from qa.ingest.fetch import FEED_TYPES, TEXT_TYPES
    from qa.ingest.web import is_feed, is_transient, load_items, parse_feed

    results: list[tuple[str, object]] = []
    for feed in book.claim_due(only=only):
        try:
            fetched = fetcher.get(feed.url, etag=feed.etag, last_modified=feed.last_modified, accept=FEED_TYPES + TEXT_TYPES)
            if fetched.not_modified:
                book.finish(feed.url, status="not modified")
                results.append((feed.url, None))
                continue
            if not is_feed(fetched.content):
                raise InputError(feed.url, "not an RSS or Atom feed")
            parsed = parse_feed(fetched, feed.url)
            seen = book.seen_keys(feed.url)
            fresh = [item for item in parsed.items if item.key not in seen]
            loaded = load_items(fresh, fetcher)
            articles = [(item, got) for item, got in loaded if not isinstance(got, InputError)]
            errors = [got for _item, got in loaded if isinstance(got, InputError)]
            outcome = ingester.store_articles([article for _item, article in articles], errors)
            stored = set(outcome.added) | set(outcome.replaced) | set(outcome.unchanged) | {a for a, _ in outcome.copies}
            refused = {source for source, _reason in outcome.rejected}
            done = [(item.key, article.id) for item, article in articles if article.id in stored or article.source in refused]
            done += [(item.key, None) for item, got in loaded if isinstance(got, InputError) and not is_transient(got)]
            book.mark_seen(feed.url, done)
            added = len(outcome.added) + len(outcome.replaced) + len(outcome.copies)
            book.finish(feed.url, status="new items" if added else "no new items", added=added,
                        error="; ".join(f"{s}: {r}" for s, r in outcome.rejected[:3]) or None,
                        etag=fetched.etag, last_modified=fetched.last_modified, title=parsed.title or None)
            results.append((feed.url, outcome))
        except InputError as exc:
            book.finish(feed.url, status="error", error=exc.reason)
            results.append((feed.url, exc.reason))
        except Exception as exc:  # the store went away: the feed is retried at its next poll
            book.finish(feed.url, status="error", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise
    return results


def poll_lines(results: list[tuple[str, object]], quiet: bool = False) -> list[str]:
    """One line per feed polled (and per item refused); `quiet` leaves out polls that changed nothing."""
    lines = []
    for url, outcome in results:
        if outcome is None:
            lines += [] if quiet else [f"{url}: not modified"]
        elif isinstance(outcome, str):
            lines.append(f"error {url}: {outcome}")
        else:
            changed = outcome.added or outcome.replaced or outcome.copies or outcome.rejected
            lines += [f"{url}: {outcome.summary()}"] if changed or not quiet else []
            lines += [f"rejected {source}: {reason}" for source, reason in outcome.rejected]
    return lines
