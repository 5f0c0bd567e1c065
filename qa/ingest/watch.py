"""Continuous ingest: article files landing in a folder are ingested as they arrive.

Polling, not inotify: it works the same on network and container file systems, and one `stat` per
file every couple of seconds costs nothing next to ingesting. A file is read once its size and
modification time have stayed the same for `settle` seconds (a half-written file is not read),
and again only when it changes; temporary names (dot files, *.tmp, *.part, *~) are skipped. A
bad file is reported and skipped; the others go on. Ingest is idempotent (articles are keyed by
id and content hash), so a restart re-reads the folder at the cost of one hash comparison a file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from qa.ingest.articles import SUPPORTED_SUFFIXES
from qa.errors import QAError

SKIPPED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")


def candidates(folder: Path) -> dict[Path, tuple[int, int]]:
    """Article files under the folder with their (size, mtime in ns)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = path.name
        if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES) or path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        try:
            info = path.stat()
        except OSError:  # removed or renamed meanwhile
            continue
        if path.is_file():
            found[path] = (info.st_size, info.st_mtime_ns)
    return found


def watch(lib, folder: Path | None, *, interval: float = 2.0, settle: float = 1.0,
          report: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """Ingest what lands in `folder` (if any) and poll the library's due feeds, until `stop` is
    set (or forever)."""
    folder = Path(folder) if folder is not None else None
    if folder is not None and not folder.is_dir():
        raise QAError(f"{folder}: not a folder")
    stop = stop or threading.Event()
    done: dict[Path, tuple[int, int]] = {}  # the version of each file already ingested (or rejected)
    steady_since: dict[Path, tuple[tuple[int, int], float]] = {}
    while not stop.is_set():
        poll_feeds(lib, report)
        now = time.monotonic()
        ready = []
        for path, signature in (candidates(folder) if folder is not None else {}).items():
            if done.get(path) == signature:
                continue
            seen, since = steady_since.get(path, (None, now))
            if seen != signature:
                steady_since[path] = (signature, now)  # new or still changing: wait until it settles
                if settle > 0:
                    continue
                since = now - settle
            if now - since >= settle:
                ready.append((path, signature))
        if ready:
            try:
                result = lib.ingest([path for path, _ in ready])
            except QAError as exc:  # the store is down: keep the files for the next round
                report(f"error: {exc}")
            else:
                for path, signature in ready:
                    done[path] = signature
                    steady_since.pop(path, None)
                report(result.summary())
                for source, reason in result.rejected:
                    report(f"rejected {source}: {reason}")
        stop.wait(interval)


def poll_feeds(lib, report: Callable[[str], None]) -> None:
    """Poll the library's due feeds (another process polling one is skipped); a store failure is
    reported and the feed retried at its next poll."""
    from qa.ingest.feeds import poll_lines

    try:
        results = lib.poll_feeds()
    except QAError as exc:
        report(f"error: {exc}")
        return
    for line in poll_lines(results, quiet=True):
        report(line)
