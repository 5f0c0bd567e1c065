"""The reader's spaCy in a forked process, for one cold command (`qa ask`): spaCy's imports and
load (~0.9 s of Python) then run beside the store's imports instead of taking turns with them
for the one GIL, and the command's first answer comes sooner. A serving process keeps spaCy in
process (it loads once)."""

from __future__ import annotations

import multiprocessing
import os
import threading


class ReaderProcess:
    """A child that runs `load()` at once (spaCy's pipeline) and then answers `read(*args)` calls
    over a pipe (the reader's candidates: plain dataclasses, identical to the in-process ones). It
    ends when this process closes it or ends (its end of the pipe closes)."""

    def __init__(self, load, read) -> None:
        context = multiprocessing.get_context("fork")  # no re-import: the child starts loading at once
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._conn, load, read), name="qa-reader", daemon=True)
        self._process.start()
        child.close()
        self._lock = threading.Lock()
        self._sent = None  # the arguments of a request sent and not yet read

    def send(self, *args) -> None:
        """Start the child's `read(*args)` now; `read` with the same arguments takes its result
        (the child works while this process scores with its model)."""
        with self._lock:
            if self._sent is None:
                try:
                    self._conn.send(args)
                    self._sent = args
                except (EOFError, OSError):
                    pass

    def read(self, *args):
        """The child's `read(*args)`, or None where it failed or is gone (the caller then reads in
        process, which raises the real error if there is one)."""
        with self._lock:
            try:
                if self._sent is not None and self._sent != args:
                    self._conn.recv()  # an answer to other arguments: not wanted any more
                    self._sent = None
                if self._sent is None:
                    self._conn.send(args)
                self._sent = None
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                return None
        return value if kind == "ok" else None

    def close(self) -> None:
        """End the child now and reap it, so no process outlives the command, not even as a zombie
        for init to collect. Killed, not waited for: it holds nothing to save, and one still loading
        spaCy (an answer that needed no reader) or reading a prefetch would see its pipe close only
        when done."""
        self._conn.close()
        self._process.kill()
        self._process.join(2)


def _serve(conn, parents_end, load, read) -> None:
    parents_end.close()  # else the child holds its own pipe open and never sees the parent end
    # Below the parent's threads: the model's load and scoring are what the answer waits for,
    # and llama.cpp's threads wait for each other, so a slice taken from one stalls both.
    os.nice(10)
    try:
        load()
    except Exception:  # noqa: BLE001 - met again by the first request
        pass
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the parent is done: no teardown of spaCy's objects to wait for
        try:
            conn.send(("ok", read(*request)))
        except Exception as exc:  # noqa: BLE001 - the parent reads in process and meets it there
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
