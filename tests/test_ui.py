"""The chat as people and programs use it: a real `qa serve`, a real Chromium driven by
Playwright, and gradio_client against the named /ask endpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .conftest import SEED, free_port, server_process, wait_http

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
QA = str(Path(sys.executable).parent / "qa")
QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`qa serve` on a free port over a store holding the seed article."""
    home = tmp_path_factory.mktemp("ui")
    subprocess.run([QA, "ingest", str(SEED)], cwd=home, check=True, capture_output=True, timeout=300)
    port = free_port()
    # The feeds test serves its feed from 127.0.0.1: the operator allows that network here.
    env = os.environ | {"QA_FETCH_ALLOWED_NETS": "127.0.0.0/8", "QA_FETCH_HOST_DELAY": "0"}
    with server_process([QA, "serve", "--port", str(port)], home / "serve.log", cwd=home, env=env) as proc:
        wait_http(f"http://127.0.0.1:{port}/", 120, proc)
        yield {"url": f"http://127.0.0.1:{port}/", "home": home}


def stored_article_ids(home: Path) -> list[str]:
    out = subprocess.run([QA, "articles", "--json"], cwd=home, capture_output=True, text=True, timeout=300)
    import json

    return sorted(a["id"] for a in json.loads(out.stdout))


def test_gradio_client_ask_endpoint(ui):
    from gradio_client import Client

    text = Client(ui["url"], verbose=False).predict(QUESTION, api_name="/ask")
    first, *sources = text.splitlines()
    assert "Motegi" in first
    assert sources and sources[0].startswith("[1] Japan, US say 3-way ties with S. Korea are key to security (2019-11-12)")
    assert "complete misjudgment" in sources[0]


def launch_args() -> list[str]:
    """Headless Chromium that makes no connections of its own (the machine's network is closed)."""
    return ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]


@pytest.fixture
def page(ui, tmp_path, request):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=launch_args())
        page = browser.new_page()
        page.set_default_timeout(90_000)
        page.goto(ui["url"])
        yield page
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}")
        browser.close()


def ask(page, question: str, answer_part: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    expect(page.locator("#chat")).to_contain_text(answer_part, timeout=90_000)


def test_browser_chat_shows_answer_and_highlighted_source(page):
    ask(page, QUESTION, "Motegi")
    mark = page.locator("#sources mark").first
    mark.wait_for()
    assert "complete misjudgment of the current regional security environment" in mark.inner_text()
    assert "Japan, US say 3-way ties with S. Korea are key to security" in page.locator("#sources").inner_text()
    assert "Grounded:" in page.locator("#sources").inner_text()


def test_browser_refusal_shows_closest_passages_not_citations(page):
    ask(page, "What is the population of Tokyo?", "The articles don't say.")
    sources = page.locator("#sources")
    expect(sources).to_contain_text("Closest passages", timeout=30_000)
    assert "closest:" in sources.inner_text() and "[1]" not in sources.inner_text()
    ask(page, "Who wrote the article?", "Mari Yamaguchi")
    expect(sources).to_contain_text("article record", timeout=30_000)


def test_browser_upload_then_ask_about_it(page, ui, tmp_path):
    article = tmp_path / "2024-05-03-rotterdam-strike.txt"
    article.write_text(
        "Rotterdam dock strike ends\n\n"
        "ROTTERDAM — Dock workers in Rotterdam ended their strike on Friday after a pay deal.\n\n"
        "The union leader, Anna de Vries, said members accepted a six percent raise.\n"
    )
    page.get_by_role("tab", name="Library").click()
    page.locator("#upload input[type=file]").set_input_files(str(article))
    expect(page.locator("#upload-results")).to_contain_text("added", timeout=90_000)
    expect(page.locator("#upload-summary")).to_contain_text("1 added")
    assert "2024-05-03-rotterdam-strike" in stored_article_ids(ui["home"])
    page.get_by_role("tab", name="Chat").click()
    ask(page, "Who is the union leader?", "Anna de Vries")


def test_browser_bad_upload_is_reported_and_changes_nothing(page, ui, tmp_path):
    before = stored_article_ids(ui["home"])
    bad = tmp_path / "scan.txt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    page.get_by_role("tab", name="Library").click()
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    expect(page.locator("#upload-results")).to_contain_text("binary file (PNG image), not text", timeout=90_000)
    expect(page.locator("#upload-summary")).to_contain_text("1 rejected")
    assert stored_article_ids(ui["home"]) == before


def test_basic_auth_guards_page_and_api(tmp_path):
    """With QA_UI_AUTH set, the API refuses clients without the password and serves those with it."""
    from gradio_client import Client

    subprocess.run([QA, "ingest", str(SEED)], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    port = free_port()
    env = {**os.environ, "QA_UI_AUTH": "reader:s3cret-pass"}
    with server_process([QA, "serve", "--port", str(port)], tmp_path / "serve.log", cwd=tmp_path, env=env) as proc:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, 120, proc)
        import urllib.request

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "gradio_api/info", timeout=10)
        assert refused.value.code in (401, 403)
        with pytest.raises(Exception):
            Client(url, verbose=False).predict(QUESTION, api_name="/ask")
        text = Client(url, auth=("reader", "s3cret-pass"), verbose=False).predict(QUESTION, api_name="/ask")
        assert "Motegi" in text


def test_browser_feeds_follow_poll_and_answer_with_the_url(page, ui):
    from benchmarks.news_site import NewsSite, Route, article_page, rss

    timeline = Path(__file__).resolve().parents[1] / "evals" / "datasets" / "timeline"
    with NewsSite() as site:
        items = []
        for path in sorted(timeline.glob("*ferry-strike-ends.txt")) + sorted(timeline.glob("*floating-library*.txt")):
            blocks = [b for b in path.read_text().split("\n\n") if b.strip()]
            site.routes[f"/n/{path.stem}.html"] = Route(article_page(blocks[0], blocks[1:], outlet="Harbour Herald"))
            items.append({"title": blocks[0], "link": site.url(f"/n/{path.stem}.html"), "published": path.stem[:10]})
        site.routes["/feed.xml"] = Route(rss("Harbour Herald", items), "application/rss+xml")
        page.get_by_role("tab", name="Library").click()
        page.locator("#feed-url textarea, #feed-url input").first.fill("http://169.254.169.254/latest/meta-data/")
        page.locator("#feed-add").click()
        expect(page.locator("#feed-message")).to_contain_text("blocked address 169.254.169.254")
        page.locator("#feed-url textarea, #feed-url input").first.fill(site.url("/feed.xml"))
        page.locator("#feed-add").click()
        expect(page.locator("#feed-message")).to_contain_text("Following Harbour Herald")
        expect(page.locator("#feeds")).to_contain_text(site.url("/feed.xml"))
        page.locator("#feed-poll").click()
        expect(page.locator("#feed-message")).to_contain_text("2 added", timeout=90_000)
        expect(page.locator("#feeds")).to_contain_text("new items")
        expect(page.locator("#articles")).to_contain_text("Ferry strike ends with pay deal")
        page.get_by_role("tab", name="Chat").click()
        ask(page, "What pay rise did the ferry crews accept?", "6 percent")
        expect(page.locator("#sources")).to_contain_text(site.url("/n/"))
