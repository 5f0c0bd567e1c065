"""Articles and feeds from the web, against a real HTTP server on 127.0.0.x (benchmarks/news_site.py):
RSS and Atom, conditional polls, wire copies, every refused source, SSRF, and a poll killed halfway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.news_site import NewsSite, Route, article_page, atom, rss
from tests.conftest import ROOT, SEED

TIMELINE = sorted((ROOT / "evals" / "datasets" / "timeline").glob("*.txt"))
LOOPBACK = "127.0.0.0/8"


def parts(path: Path) -> tuple[str, list[str]]:
    blocks = [b.strip() for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    return blocks[0], blocks[1:]


def publish(site: NewsSite, path: Path, *, outlet: str = "Harbour Herald", prefix: str = "/news") -> dict:
    """An article page on the site (its canonical link carries a tracking parameter, as many do);
    returns its feed item."""
    title, paragraphs = parts(path)
    page = f"{prefix}/{path.stem}.html"
    site.routes[page] = Route(article_page(title, paragraphs, outlet=outlet, canonical=site.url(page) + "?utm_source=feed",
                                           published=path.stem[:10]))
    return {"title": title, "link": site.url(page + "?utm_medium=rss"), "published": path.stem[:10]}


@pytest.fixture
def site():
    with NewsSite() as running:
        running.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /private/\n", "text/plain")
        yield running


def library(folder: Path, embedder, **settings):
    from qa.config import Settings
    from qa.library import Library

    values = {"fetch_allowed_nets": LOOPBACK, "fetch_host_delay": 0.0, "fetch_timeout": 2.0} | settings
    return Library(str(folder), "web", settings=Settings(**values), embedder=embedder)


def test_a_feed_url_ingests_every_item_with_title_date_and_url_and_answers_cite_the_url(site, tmp_path, embedder):
    items = [publish(site, path) for path in TIMELINE]
    site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml")
    lib = library(tmp_path / "lib", embedder)
    report = lib.ingest([site.url("/feed.xml")])
    assert report.rejected == [] and len(report.added) == len(TIMELINE)
    records = {r.title: r for r in lib.articles()}
    for item in items:
        record = records[item["title"]]
        assert record.published == item["published"]
        assert record.url == item["link"].split("?")[0]  # canonical: tracking parameters dropped
        assert record.outlet == "Harbour Herald"
    answer = lib.ask("What pay rise did the ferry crews accept?")
    assert answer.citations and all(c.url and c.url.startswith(site.url("/news/")) for c in answer.citations)
    # The same page reached through another link (tracking parameters) is the same article.
    again = lib.ingest([items[0]["link"].replace("utm_medium=rss", "utm_campaign=x")])
    assert again.unchanged and not again.added


def test_an_atom_feed_is_told_by_its_content_not_its_url(site, tmp_path, embedder):
    items = [publish(site, path) for path in TIMELINE[:2]]
    site.routes["/updates"] = Route(atom("Harbour Herald", items), "text/xml")
    report = library(tmp_path / "lib", embedder).ingest([site.url("/updates")])
    assert len(report.added) == 2 and not report.rejected


def test_a_followed_feed_polls_conditionally_and_new_items_are_found_by_another_process(site, tmp_path, embedder):
    items = [publish(site, path) for path in TIMELINE[:3]]
    site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml", conditional=True)
    lib = library(tmp_path / "lib", embedder)
    lib.follow(site.url("/feed.xml"), "1h")
    (_, first), = lib.poll_feeds()
    assert len(first.added) == 3
    before = len(site.requests)
    assert lib.poll_feeds() == []  # not due for an hour
    (_, second), = lib.poll_feeds(only=[site.url("/feed.xml")])
    assert second is None  # 304: nothing re-ingested
    made = site.requests[before:]
    assert [p for p, _ in made] == ["/feed.xml"] and "If-None-Match" in made[0][1]
    # Two new items: one poll adds exactly them, and another reader sees them at once.
    reader = library(tmp_path / "lib", embedder)
    assert reader.search("reservoir levels lowest in a decade", k=3)[0].title != parts(TIMELINE[4])[0]
    items += [publish(site, path) for path in TIMELINE[3:5]]
    site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml", conditional=True)
    (_, third), = lib.poll_feeds(only=[site.url("/feed.xml")])
    assert len(third.added) == 2 and not third.unchanged
    assert reader.search("reservoir levels lowest in a decade", k=3)[0].title == parts(TIMELINE[4])[0]
    state = lib.feeds.get(site.url("/feed.xml"))
    assert state.items_added == 5 and state.items_seen == 5 and state.title == "Harbour Herald"
    # The state lives in the library's folder: a new process sees it.
    assert library(tmp_path / "lib", embedder).feeds.get(site.url("/feed.xml")).items_added == 5


def test_a_feed_due_is_claimed_by_one_process_only(tmp_path):
    from qa.ingest.feeds import FeedBook

    first, second = FeedBook(tmp_path / "feeds.sqlite3"), FeedBook(tmp_path / "feeds.sqlite3")
    first.add("http://example.org/feed.xml", 60)
    assert [f.url for f in first.claim_due()] == ["http://example.org/feed.xml"]
    assert second.claim_due() == []  # leased to the first
    first.finish("http://example.org/feed.xml", status="no new items")
    assert second.claim_due() == []  # polled: not due for a minute


def wire_copy(text: str) -> tuple[str, list[str]]:
    """The seed story as another outlet runs it: new headline, a paragraph cut, a local line added,
    a word changed."""
    _, paragraphs = parts(SEED)
    edited = [p.replace("said", "told reporters") if n == 1 else p for n, p in enumerate(paragraphs) if n != 3]
    edited.insert(2, "The decision is being watched closely by exporters in our region, local officials said on Tuesday.")
    return "Japan presses US over intelligence pact", edited


def test_wire_copies_are_one_story_with_several_publishers(site, tmp_path, embedder):
    title, paragraphs = parts(SEED)
    site.routes["/world/gsomia.html"] = Route(article_page(title, paragraphs, outlet="Wire Daily", published="2019-11-12"))
    copy_title, copy_paragraphs = wire_copy(SEED.read_text())
    site.routes["/asia/japan-pact.html"] = Route(article_page(copy_title, copy_paragraphs, outlet="Asia Courier", published="2019-11-13"))
    lib = library(tmp_path / "lib", embedder)
    first = lib.ingest([site.url("/world/gsomia.html")])
    second = lib.ingest([site.url("/asia/japan-pact.html")])
    assert len(first.added) == 1 and second.added == [] and second.copies == [(second.copies[0][0], first.added[0])]
    story, copy_id = first.added[0], second.copies[0][0]
    assert {r.id for r in lib.articles()} == {story, copy_id}
    hits = lib.search("Who said GSOMIA scrapping was a misjudgment?", k=10)
    assert {h.article_id for h in hits} == {story}  # the story once, not once per outlet
    answer = lib.ask("Who said GSOMIA scrapping was a misjudgment?")
    assert {c.article_id for c in answer.citations} == {story}
    assert [a["outlet"] for a in answer.citations[0].also] == ["Asia Courier"]
    assert answer.citations[0].also[0]["url"] == site.url("/asia/japan-pact.html")
    # An exact re-post by a third outlet costs a lookup and is a copy too.
    site.routes["/repost.html"] = Route(article_page(title, paragraphs, outlet="Repost Times"))
    assert lib.ingest([site.url("/repost.html")]).copies[0][1] == story
    # Deleting the story keeps the others: the earliest copy becomes the story, searchable.
    assert lib.delete(story)
    remaining = {r.id: r for r in lib.articles()}
    assert set(remaining) == {copy_id, lib.ingest([site.url("/repost.html")]).unchanged[0]}
    promoted = [r for r in remaining.values() if not r.story]
    assert [r.id for r in promoted] == [copy_id] and promoted[0].chunks > 0
    assert {h.article_id for h in lib.search("Who said GSOMIA scrapping was a misjudgment?", k=10)} == {copy_id}
    assert lib.check()["index_lagging_articles"] == []


def test_an_unrelated_article_on_the_same_topic_is_not_a_copy(site, tmp_path, embedder):
    lib = library(tmp_path / "lib", embedder)
    for path in TIMELINE:  # four ferry-strike stories share names, places and phrases
        publish(site, path)
    report = lib.ingest([site.url(f"/news/{path.stem}.html") for path in TIMELINE])
    assert len(report.added) == len(TIMELINE) and report.copies == []


def refused_sources(site: NewsSite) -> dict[str, str]:
    """Path -> the start of the reason each bad source must be refused with."""
    gate = threading.Event()

    def slow(handler):
        gate.wait(10)

    def endless(handler):  # no Content-Length: the cap must hold while reading
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.end_headers()
        try:
            for _ in range(60):
                handler.wfile.write(b"<p>" + b"x" * (1 << 20) + b"</p>")
        except OSError:
            pass

    def declared_big(handler):  # refused on its Content-Length, before any of it is read
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(50_000_000))
        handler.end_headers()
        try:
            handler.wfile.write(b"<p>" * 1000)
        except OSError:
            pass

    site.routes |= {
        "/slow.html": Route(handler=slow),
        "/big.html": Route(handler=endless),
        "/declared-big.html": Route(handler=declared_big),
        "/broken.xml": Route(b"<?xml version='1.0'?><rss><channel><item><title>unclosed", "application/rss+xml"),
        "/private/story.html": Route(article_page("Hidden", ["A story robots.txt keeps out."] * 5)),
        "/doc.pdf": Route(b"%PDF-1.4 ...", "application/pdf"),
        "/to-metadata": Route(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
        "/to-private": Route(status=301, headers={"Location": "http://10.1.2.3/internal"}),
        "/loop": Route(status=302, headers={"Location": "/loop"}),
        "/empty.html": Route(b"<html><body><nav>Home</nav></body></html>"),
    }
    return {
        "/missing.html": "HTTP 404", "/slow.html": "timed out", "/big.html": "over the 5 MB limit",
        "/declared-big.html": "50.0 MB, over the 5 MB limit",
        "/broken.xml": "malformed feed", "/private/story.html": "disallowed by robots.txt",
        "/doc.pdf": "content type 'application/pdf'", "/to-metadata": "blocked address 169.254.169.254 (link-local)",
        "/to-private": "blocked address 10.1.2.3 (private)", "/loop": "more than 5 redirects",
        "/empty.html": "no ",
    }


def test_every_bad_source_is_one_line_and_nothing_stored_changes(site, tmp_path, embedder):
    expected = refused_sources(site)
    lib = library(tmp_path / "lib", embedder)
    publish(site, TIMELINE[0])
    good = site.url(f"/news/{TIMELINE[0].stem}.html")
    assert lib.ingest([good]).added
    before = {(r.id, r.content_hash, r.chunks) for r in lib.articles()}
    started = time.monotonic()
    report = lib.ingest([site.url(path) for path in expected] + [good])
    assert time.monotonic() - started < 30
    reasons = dict(report.rejected)
    for path, reason in expected.items():
        assert reasons[site.url(path)].startswith(reason), (path, reasons[site.url(path)])
        assert "\n" not in reasons[site.url(path)]
    assert report.unchanged and not report.added
    assert {(r.id, r.content_hash, r.chunks) for r in lib.articles()} == before


def test_the_cli_ingests_a_feed_and_exits_non_zero_when_nothing_could_be_added(site, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app

    items = [publish(site, path) for path in (TIMELINE[0], TIMELINE[-1])]
    site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml")
    monkeypatch.setenv("QA_FETCH_ALLOWED_NETS", LOOPBACK)
    monkeypatch.setenv("QA_FETCH_HOST_DELAY", "0")
    data = ["--data-dir", str(tmp_path / "lib")]
    ok = CliRunner().invoke(app, [*data, "ingest", site.url("/feed.xml")])
    assert ok.exit_code == 0, ok.output
    assert "2 added" in ok.output
    bad = CliRunner().invoke(app, [*data, "ingest", site.url("/missing.html")])
    assert bad.exit_code != 0 and f"{site.url('/missing.html')}: HTTP 404" in bad.output
    added = CliRunner().invoke(app, [*data, "feeds", "add", site.url("/feed.xml"), "--every", "10m"])
    assert added.exit_code == 0 and "every 10m" in added.output
    not_feed = CliRunner().invoke(app, [*data, "feeds", "add", items[0]["link"]])
    assert not_feed.exit_code != 0 and "not an RSS or Atom feed" in not_feed.output
    listed = CliRunner().invoke(app, [*data, "feeds", "list"])
    assert site.url("/feed.xml") in listed.output and "not polled yet" in listed.output
    asked = CliRunner().invoke(app, [*data, "ask", "What pay rise did the ferry crews accept?"])
    assert asked.exit_code == 0 and "6 percent" in asked.output
    assert site.url(f"/news/{TIMELINE[-1].stem}.html") in asked.output  # the citation's URL


def test_no_fetch_reaches_an_address_the_operator_did_not_allow(site, tmp_path, embedder):
    from qa.ingest.fetch import Fetcher, FetchError

    publish(site, TIMELINE[0])
    page = f"/news/{TIMELINE[0].stem}.html"
    strict = Fetcher(None, host_delay=0)
    for url in (site.url(page), f"http://localhost:{site.port}{page}", f"http://[::ffff:127.0.0.1]:{site.port}{page}",
                f"http://2130706433:{site.port}{page}", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
                "ftp://example.org/file", "file:///etc/passwd", f"http://user:pw@127.0.0.1:{site.port}{page}"):
        with pytest.raises(FetchError):
            strict.get(url)
    assert site.requests == []  # not one request reached the server
    # Allowed: a page redirected to another host is followed, every hop checked.
    with NewsSite("127.0.0.2") as other:
        other.routes["/moved"] = Route(status=301, headers={"Location": site.url(page)})
        fetched = Fetcher(LOOPBACK, host_delay=0).get(other.url("/moved"))
        assert fetched.url == site.url(page) and fetched.redirects == [site.url(page)]
        narrow = Fetcher("127.0.0.2/32", host_delay=0)
        with pytest.raises(FetchError, match="blocked address 127.0.0.1"):
            narrow.get(other.url("/moved"))  # the redirect's target is outside the allowed network


def test_a_poll_killed_halfway_resumes_and_stores_nothing_twice(site, tmp_path, embedder):
    items = [publish(site, path) for path in TIMELINE]
    release = threading.Event()
    slow_page = f"/news/{TIMELINE[3].stem}.html"
    served = site.routes[slow_page]

    def held(handler):
        if not release.is_set():
            release.wait(60)
        handler._send(200, served.body, served.content_type)

    site.routes[slow_page] = Route(handler=held)
    site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml", conditional=True)
    lib = library(tmp_path / "lib", embedder)
    lib.ingest([items[0]["link"]])  # one item already stored before the feed is followed
    lib.follow(site.url("/feed.xml"), "1h")
    env = os.environ | {"QA_FETCH_ALLOWED_NETS": LOOPBACK, "QA_FETCH_HOST_DELAY": "0", "QA_COLLECTION": "web"}
    poller = subprocess.Popen([sys.executable, "-m", "qa.cli", "--data-dir", str(tmp_path / "lib"), "feeds", "poll"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while site.hits(slow_page.split("?")[0] + "?utm_medium=rss") == 0 and time.monotonic() < deadline:
        assert poller.poll() is None, "the poller ended before reaching the held page"
        time.sleep(0.2)
    os.kill(poller.pid, signal.SIGKILL)
    poller.wait()
    release.set()
    assert lib.feeds.get(site.url("/feed.xml")).last_poll is None  # the killed poll recorded nothing
    (_, report), = lib.poll_feeds()  # its lease died with it: this process takes the feed over
    assert len(report.added) + len(report.unchanged) == len(TIMELINE)
    ids = [r.id for r in lib.articles()]
    assert len(ids) == len(set(ids)) == len(TIMELINE)
    assert lib.feeds.get(site.url("/feed.xml")).items_seen == len(TIMELINE)
