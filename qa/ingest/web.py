"""Articles from the web: a URL is an article page or an RSS/Atom feed, told apart by its content
(not by how the URL is spelled). Pages are cleaned by trafilatura like HTML files; a feed's items
are fetched as pages, the item's title and date used where the page has none.

An article fetched from the web is keyed by its canonical URL (the page's <link rel=canonical>
when it names the same site, tracking parameters dropped): the same story reached by two links is
stored once, and a changed page replaces its old version as a changed file does."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from qa.errors import InputError
from qa.ingest.articles import Article, LoadResult, _html_to_text, _make_article, decode_bytes, slugify
from qa.ingest.fetch import FEED_TYPES, PAGE_TYPES, Fetched, Fetcher, FetchError

_ROOT_RE = re.compile(rb"<(?![?!])([A-Za-z][\w:.-]*)")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,15}://")


def is_url(source) -> bool:
    """A string with a URL scheme (any: the fetcher refuses what is not http or https)."""
    return isinstance(source, str) and bool(_SCHEME_RE.match(source))


def is_feed(content: bytes) -> bool:
    """Whether a document is an RSS or Atom feed: its root element, past the XML declaration,
    comments and doctype."""
    head = re.sub(rb"<!--.*?-->", b"", content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n"), flags=re.S)
    match = _ROOT_RE.search(head)
    return bool(match) and match.group(1).lower() in (b"rss", b"feed", b"rdf:rdf")


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def canonical_url(page_url: str, declared: str | None = None) -> str:
    """The URL an article is known by: the page's declared canonical URL when it is on the same
    site (another site's would let a page overwrite that site's article), tracking parameters and
    fragments dropped (courlan)."""
    from courlan import normalize_url

    url = declared if declared and declared.startswith(("http://", "https://")) and _site(declared) == _site(page_url) else page_url
    try:
        return normalize_url(url, strict=True)
    except (ValueError, AttributeError):
        return url


def article_id(url: str) -> str:
    """A readable, stable id from a canonical URL: site and path as a slug, plus a short hash
    (two URLs whose slugs collide stay apart)."""
    parts = urlsplit(url)
    slug = slugify(f"{_site(url)} {parts.path}", max_len=60) or "page"
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


@dataclass
class FeedItem:
    link: str
    key: str  # the entry's guid, else its link: what marks it as seen
    title: str = ""
    published: str | None = None
    author: str | None = None


@dataclass
class Feed:
    url: str
    title: str
    items: list[FeedItem] = field(default_factory=list)


def parse_feed(fetched: Fetched, source: str) -> Feed:
    """A feed's items (with a link each), or InputError when it is not a readable feed."""
    import feedparser

    parsed = feedparser.parse(fetched.content, response_headers={"content-location": fetched.url})
    entries = [e for e in parsed.entries if e.get("link")]
    if parsed.get("bozo") and not entries:
        problem = str(parsed.get("bozo_exception") or "unreadable").splitlines()[0][:120]
        raise InputError(source, f"malformed feed ({problem})")
    items = []
    for entry in entries:
        date = entry.get("published_parsed") or entry.get("updated_parsed")
        items.append(FeedItem(
            link=entry["link"], key=str(entry.get("id") or entry["link"]), title=str(entry.get("title") or ""),
            published=f"{date.tm_year:04d}-{date.tm_mon:02d}-{date.tm_mday:02d}" if date else None,
            author=entry.get("author"),
        ))
    return Feed(fetched.url, str(parsed.feed.get("title") or ""), items)


def article_from_page(fetched: Fetched, source: str, item: FeedItem | None = None) -> Article:
    """The article on a fetched page; the feed item's title, date and author fill what the page lacks."""
    if is_feed(fetched.content):
        raise InputError(source, "a feed, not an article page")
    html = decode_bytes(fetched.content, source)
    text, meta = _html_to_text(html, source)
    url = canonical_url(fetched.url, meta.pop("url", None))
    if item:  # the feed's date is the publisher's own; a page's is often htmldate's guess
        for key, value in (("title", item.title), ("author", item.author)):
            if value and not meta.get(key):
                meta[key] = value
        meta["published"] = item.published or meta.get("published")
    meta |= {"id": article_id(url), "url": url, "source": url, "outlet": meta.pop("sitename", None) or _site(url)}
    return _make_article(text, meta, source, meta["id"])


def load_urls(urls: list[str], fetcher: Fetcher, progress=None) -> LoadResult:
    """Articles behind these URLs: an article page gives one; a feed gives one per item (each item
    a page fetch). Each failure is an error naming its URL."""
    articles: list[Article] = []
    errors: list[InputError] = []
    for n, url in enumerate(urls, start=1):
        try:
            fetched = fetcher.get(url)
            if is_feed(fetched.content):
                for _item, result in load_items(parse_feed(fetched, url).items, fetcher):
                    (errors if isinstance(result, InputError) else articles).append(result)
            elif fetched.content_type in FEED_TYPES:
                raise InputError(url, "XML that is not an RSS or Atom feed")
            else:
                articles.append(article_from_page(fetched, url))
        except InputError as exc:
            errors.append(exc)
        if progress:
            progress("fetch", n, len(urls))
    return LoadResult(articles, errors)


def load_items(items: list[FeedItem], fetcher: Fetcher) -> list[tuple[FeedItem, Article | InputError]]:
    """Each feed item with its article page, or the error naming its link."""
    results: list[tuple[FeedItem, Article | InputError]] = []
    for item in items:
        try:
            results.append((item, article_from_page(fetcher.get(item.link, accept=PAGE_TYPES), item.link, item)))
        except FetchError as exc:
            results.append((item, exc))
        except InputError as exc:
            results.append((item, InputError(item.link, exc.reason)))
    return results


def is_transient(error: InputError) -> bool:
    """A failure worth retrying at the next poll (the others mark the item done)."""
    reason = error.reason
    return reason.startswith(("timed out", "cannot connect", "cannot resolve", "connection broke", "HTTP 5", "HTTP 429"))
