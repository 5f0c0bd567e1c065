"""Loaders that run once per process, whichever thread asks first: a warm-up thread and the first
question may both want spaCy or the local model (lru_cache alone lets two threads that miss at
once both load)."""

from __future__ import annotations

import functools
import threading


def load_once(loader):
    """`loader()` is called at most once; every caller gets its result (a failure is not kept:
    the next call tries again)."""
    lock = threading.Lock()
    held: list = []

    @functools.wraps(loader)
    def get():
        if not held:
            with lock:
                if not held:
                    held.append(loader())
        return held[0]

    return get
