"""Fetching web pages and feeds safely: a URL a client gives is untrusted.

- Only http and https. Every address a host name resolves to must be public (not loopback,
  private, link-local — the cloud metadata address among them —, shared, multicast or reserved)
  unless the operator allowed its network (QA_FETCH_ALLOWED_NETS, CIDRs). The connection then goes
  to the address that was checked (the Host header and TLS name stay the host's), so a DNS answer
  that changes between check and connect (DNS rebinding) cannot reach an inner address. Redirects
  are followed by hand, each hop checked the same way, at most `max_redirects`.
- A size cap (Content-Length first, then while reading), connect/read timeouts and an overall
  deadline (a page that drips bytes slowly ends too), content types limited to pages and feeds.
- A good citizen: robots.txt honoured per host (cached for the fetcher's life), a delay between
  requests to one host, an honest User-Agent, conditional GET (ETag / Last-Modified) so an
  unchanged feed costs one 304.
Every failure is a FetchError: one line naming the URL and the reason.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from qa.errors import InputError

USER_AGENT = "articles-qa/0.1 (news archive question answering; honours robots.txt)"
PAGE_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml", "text/xml",
              "application/x-rss+xml", "application/feed+xml")
TEXT_TYPES = ("text/plain",)  # feeds served as text/plain exist; the content decides


ROBOTS_TTL_S = 3600.0  # robots.txt kept this long per site, across fetchers (RFC 9309 allows up to 24 h)
_ROBOTS: dict[str, tuple[float, RobotFileParser]] = {}


class FetchError(InputError):
    """A URL that could not be fetched; `reason` is one line."""


def parse_nets(text: str | None) -> list:
    """CIDRs from a comma-separated setting; a bad one is an error naming it."""
    nets = []
    for part in (text or "").replace(";", ",").split(","):
        if part.strip():
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise InputError("QA_FETCH_ALLOWED_NETS", f"'{part.strip()}' is not a network (use CIDRs like 127.0.0.0/8)") from None
    return nets


def blocked_reason(address: str, allowed: list) -> str | None:
    """Why an address may not be fetched (None when it may)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    kind = ("loopback" if ip.is_loopback else "link-local" if ip.is_link_local else "private" if ip.is_private
            else "multicast" if ip.is_multicast else "reserved")
    return f"blocked address {ip} ({kind}); an operator can allow its network with QA_FETCH_ALLOWED_NETS"


@dataclass
class Fetched:
    url: str  # after redirects
    status: int  # 200, or 304 for a conditional request whose resource did not change
    content: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    redirects: list[str] = field(default_factory=list)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class Fetcher:
    """One fetcher per ingest or poll: it keeps the per-host timing and an HTTP client."""

    def __init__(self, allowed_nets: str | list | None = None, *, timeout: float = 10.0, max_bytes: int = 5_000_000,
                 host_delay: float = 1.0, max_redirects: int = 5, respect_robots: bool = True):
        self.allowed = parse_nets(allowed_nets) if isinstance(allowed_nets, (str, type(None))) else list(allowed_nets)
        self.timeout, self.max_bytes, self.host_delay = timeout, max_bytes, host_delay
        self.max_redirects, self.respect_robots = max_redirects, respect_robots
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._client = None

    @classmethod
    def from_settings(cls, settings) -> "Fetcher":
        return cls(settings.fetch_allowed_nets, timeout=settings.fetch_timeout, max_bytes=int(settings.fetch_max_mb * 1e6),
                   host_delay=settings.fetch_host_delay)

    @property
    def client(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=False, trust_env=False, headers={"User-Agent": USER_AGENT},
                                        timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the one entry point --------------------------------------------------------------
    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
            accept: tuple[str, ...] = PAGE_TYPES + FEED_TYPES + TEXT_TYPES) -> Fetched:
        """The resource at `url` (following safe redirects), or FetchError. With `etag` /
        `last_modified`, an unchanged resource comes back as status 304 with no content."""
        original, redirects = url, []
        for _hop in range(self.max_redirects + 1):
            pinned = self._pinned(url, original)  # a refused address is the reason, not the robots.txt it blocks
            if self.respect_robots and not self._robots_allow(url):
                raise FetchError(original, f"disallowed by robots.txt ({url})" if url != original else "disallowed by robots.txt")
            response = self._request(url, original, etag, last_modified, pinned)
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(original, f"HTTP {response.status_code} redirect without a Location")
                    url = urljoin(url, location)
                    redirects.append(url)
                    continue
                return self._read(response, original, url, redirects, accept)
            finally:
                response.close()
        raise FetchError(original, f"more than {self.max_redirects} redirects")

    # --- the parts ---------------------------------------------------------------------------
    def _pinned(self, url: str, original: str) -> tuple[str, dict, dict]:
        """(URL to the checked address, headers, request extensions) for `url`, or FetchError."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(original, f"only http and https URLs can be fetched, not '{parts.scheme or url}'")
        host = parts.hostname
        if not host:
            raise FetchError(original, "URL has no host")
        if parts.username or parts.password:
            raise FetchError(original, "URLs with a user name or password are not fetched")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(original, f"cannot resolve host '{host}' ({getattr(exc, 'strerror', None) or exc})") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for address in addresses:  # every address: a name with one inner address is refused
            reason = blocked_reason(address, self.allowed)
            if reason:
                raise FetchError(original, reason + (f" (via {url})" if url != original else ""))
        address = addresses[0]
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc += f":{parts.port}"
        host_header = host if not parts.port else f"{host}:{parts.port}"
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), {"Host": host_header}, extensions

    def _wait_turn(self, host: str) -> None:
        """At most one request per `host_delay` seconds to a host, across this fetcher's threads."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._last.get(host, -1e9) + self.host_delay)
            self._last[host] = start
        if start > now:
            time.sleep(start - now)

    def _request(self, url: str, original: str, etag: str | None, last_modified: str | None, pinned=None):
        import httpx

        target, headers, extensions = pinned or self._pinned(url, original)
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(urlsplit(url).hostname or "")
        try:
            request = self.client.build_request("GET", target, headers=headers, extensions=extensions)
            return self.client.send(request, stream=True)
        except httpx.TimeoutException:
            raise FetchError(original, f"timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(original, f"cannot connect ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None

    def _read(self, response, original: str, url: str, redirects: list[str], accept: tuple[str, ...]) -> Fetched:
        import httpx

        headers = response.headers
        common = dict(url=url, etag=headers.get("etag"), last_modified=headers.get("last-modified"), redirects=redirects)
        if response.status_code == 304:
            return Fetched(status=304, **common)
        if response.status_code != 200:
            raise FetchError(original, f"HTTP {response.status_code}" + (f" {response.reason_phrase}" if response.reason_phrase else ""))
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and content_type not in accept:
            raise FetchError(original, f"content type '{content_type}' is not an article page or a feed")
        limit = f"over the {self.max_bytes / 1e6:g} MB limit"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(original, f"{int(declared) / 1e6:.1f} MB, {limit}")
        deadline = time.monotonic() + 3 * self.timeout
        body = bytearray()
        try:
            for piece in response.iter_bytes():
                body += piece
                if len(body) > self.max_bytes:
                    raise FetchError(original, limit)
                if time.monotonic() > deadline:
                    raise FetchError(original, f"timed out (still sending after {3 * self.timeout:g} s)")
        except httpx.TimeoutException:
            raise FetchError(original, f"timed out after {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(original, f"connection broke while reading ({type(exc).__name__})") from None
        return Fetched(status=200, content=bytes(body), content_type=content_type, **common)

    def _robots_allow(self, url: str) -> bool:
        """robots.txt of the URL's site, read once an hour per process (RFC 9309: a missing file
        allows all; a server error or an unreachable site disallows until it is read again)."""
        parts = urlsplit(url)
        site = f"{parts.scheme}://{parts.netloc}"
        cached = _ROBOTS.get(site)
        if cached is None or time.monotonic() - cached[0] > ROBOTS_TTL_S:
            parser = RobotFileParser()
            try:
                response = self._request(site + "/robots.txt", url, None, None)
                try:
                    status = response.status_code
                    text = response.read()[: 500_000].decode("utf-8", "replace") if status == 200 else ""
                finally:
                    response.close()
            except FetchError:
                status, text = 599, ""
            if status == 200:
                parser.parse(text.splitlines())
            elif 400 <= status < 500 or status in (301, 302, 303, 307, 308):
                parser.allow_all = True
            else:
                parser.disallow_all = True
            cached = _ROBOTS[site] = (time.monotonic(), parser)
        return cached[1].can_fetch(USER_AGENT, url)
