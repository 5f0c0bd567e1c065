"""A real local news site for the feed tests and `python -m benchmarks feeds`: an HTTP server on
127.0.0.x serving article pages (with the navigation, share bars and footers real pages carry),
RSS 2.0 and Atom feeds with ETag / Last-Modified, robots.txt, and whatever odd routes a test adds
(redirects, slow or huge pages, errors). It counts the requests it answers."""

from __future__ import annotations

import hashlib
import html
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} | {outlet}</title>
<link rel="canonical" href="{canonical}"><meta property="og:site_name" content="{outlet}">
{date_meta}</head><body>
<header><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/business">Business</a>
<a href="/sport">Sport</a> <a href="/subscribe">Subscribe</a></nav></header>
<div class="share">Share this story <a href="#">Facebook</a> <a href="#">X</a> <a href="#">Email</a></div>
<main><article><h1>{title}</h1><p class="byline">By {author}</p>
{paragraphs}
</article></main>
<aside><h2>Most popular stories</h2><ul><li><a href="/a">Council approves new budget after long debate</a></li>
<li><a href="/b">Weather forecast: rain expected through the weekend</a></li></ul></aside>
<footer><p>Sign up for our newsletter delivered to your inbox every morning.</p>
<p>© 2024 {outlet}. All rights reserved.</p></footer></body></html>"""


def article_page(title: str, paragraphs: list[str], *, outlet: str = "Example News", canonical: str = "",
                 author: str = "Staff Reporter", published: str | None = None) -> bytes:
    date_meta = f'<meta property="article:published_time" content="{published}T08:00:00Z">' if published else ""
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return PAGE.format(title=html.escape(title), outlet=html.escape(outlet), canonical=html.escape(canonical),
                       author=html.escape(author), date_meta=date_meta, paragraphs=body).encode()


def rss(title: str, items: list[dict]) -> bytes:
    """RSS 2.0; items: {"title", "link", "guid", "published" (YYYY-MM-DD)}."""
    parts = []
    for item in items:
        date = ""
        if item.get("published"):
            stamp = time.mktime(time.strptime(item["published"], "%Y-%m-%d"))
            date = f"<pubDate>{formatdate(stamp, usegmt=True)}</pubDate>"
        parts.append(f"<item><title>{html.escape(item['title'])}</title><link>{html.escape(item['link'])}</link>"
                     f"<guid>{html.escape(item.get('guid', item['link']))}</guid>{date}</item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{html.escape(title)}</title>'
            f"<link>http://example.org/</link><description>news</description>{''.join(parts)}</channel></rss>").encode()


def atom(title: str, items: list[dict]) -> bytes:
    parts = [f"<entry><title>{html.escape(i['title'])}</title><link href=\"{html.escape(i['link'])}\"/>"
             f"<id>{html.escape(i.get('guid', i['link']))}</id>"
             f"<updated>{i.get('published', '2024-01-01')}T08:00:00Z</updated></entry>" for i in items]
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{html.escape(title)}</title>'
            f"<id>urn:feed</id><updated>2024-01-01T00:00:00Z</updated>{''.join(parts)}</feed>").encode()


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict = field(default_factory=dict)
    conditional: bool = False  # answers If-None-Match / If-Modified-Since with 304
    handler: Callable | None = None  # custom: handler(request_handler) writes the whole response


class NewsSite:
    """Start with `with NewsSite() as site:`; `site.url(path)`; `site.routes[path] = Route(...)`."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict]] = []  # (path, headers) of every request answered
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def __enter__(self) -> "NewsSite":
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                site.requests.append((self.path, dict(self.headers)))
                route = site.routes.get(self.path) or site.routes.get(self.path.split("?")[0])
                if route is None:
                    self._send(404, b"not found", "text/plain")
                elif route.handler:
                    route.handler(self)
                else:
                    etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
                    if route.conditional and self.headers.get("If-None-Match") == etag:
                        self._send(304, b"", None, {"ETag": etag})
                        return
                    extra = dict(route.headers)
                    if route.conditional:
                        extra |= {"ETag": etag, "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
                    self._send(route.status, route.body, route.content_type, extra)

            def _send(self, status, body, content_type, headers=None):
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that hung up early: not news
                pass

        self._server = Server((self.host, 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
