"""What benchmarks that start a real server (`qa serve`, `chroma run`) on 127.0.0.1 share."""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, tries: int = 600, pause: float = 0.2, timeout: float = 2.0) -> None:
    """Until the URL answers (or `tries` attempts have failed: the measurement then fails loudly)."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=timeout)
            return
        except OSError:
            time.sleep(pause)
