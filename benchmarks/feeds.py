"""Feeds end to end, on a real local HTTP server (benchmarks/news_site.py), and wire-copy detection.

    python -m benchmarks feeds [--feeds 4] [--items 25] [--new 5] [--copies 120]

Articles: consecutive paragraphs of the repository's SQuAD 2.0 dev half (Wikipedia, CC BY-SA 4.0),
four to an article, served as pages with page furniture (navigation, share bar, most-popular list,
newsletter footer) under N RSS feeds of M items.

1. first poll: every feed followed and polled once (fetch → clean → embed → store), articles/s;
2. re-poll, nothing changed: requests made (should be one conditional GET a feed, answered 304), s;
3. re-poll after K new items in each feed: requests, seconds, articles added;
4. wire copies: edited copies of articles the way outlets run agency copy (headline rewritten, a
   paragraph cut, a local line added, a dateline and attribution changed, the ending trimmed), and
   as negatives the other articles, among them others cut from the same Wikipedia article (same
   topic, other text). Precision and recall of "is a copy" at several MinHash thresholds (every
   pair scored), and of the library itself at the chosen threshold (copies ingested through the
   site after the originals: what it stored as copies).
The local site answers at once and the per-host delay is set to 0: these are the pipeline's own
figures; a real site's latency and politeness delay (QA_FETCH_HOST_DELAY, 0.5 s) add to them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

from benchmarks.news_site import NewsSite, Route, article_page, rss

ROOT = Path(__file__).resolve().parents[1]
SQUAD = ROOT / "evals" / "datasets" / "squad2-dev" / "dev-v2.0-half.json"
LOCAL_LINES = [
    "The announcement was welcomed by business leaders in the region, a local chamber of commerce said.",
    "Readers can find more coverage of the story on our website throughout the day.",
    "Local officials said they were studying what the decision would mean for residents.",
    "The county council is expected to discuss the matter at its meeting next week.",
]


def base_articles() -> list[tuple[str, list[str]]]:
    """(title, paragraphs): four consecutive paragraphs of one Wikipedia article each."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    articles = []
    for entry in data:
        paragraphs = [p["context"].strip() for p in entry["paragraphs"]]
        for n in range(0, len(paragraphs) - 3, 4):
            articles.append((f"{entry['title'].replace('_', ' ')}, part {n // 4 + 1}", paragraphs[n : n + 4]))
    return articles


def edited_copy(title: str, paragraphs: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """A wire copy as another outlet runs it: always a new headline and a dateline; then two or
    three of: a paragraph cut, a local line added, 'said' changed, the ending trimmed."""
    edited = list(paragraphs)
    edited[0] = f"{rng.choice(['LONDON', 'NEW YORK', 'PARIS', 'SYDNEY'])} (AP) — {edited[0]}"
    edits = rng.sample(["cut", "local", "said", "trim"], k=rng.choice([2, 3]))
    if "cut" in edits and len(edited) > 2:
        del edited[rng.randrange(1, len(edited))]
    if "local" in edits:
        edited.insert(rng.randrange(1, len(edited) + 1), rng.choice(LOCAL_LINES))
    if "said" in edits:
        edited = [re.sub(r"\bsaid\b", "told reporters", p) for p in edited]
    if "trim" in edits:  # the last sentences of the last paragraph go
        sentences = re.split(r"(?<=[.!?])\s+", edited[-1])
        edited[-1] = " ".join(sentences[: max(1, len(sentences) // 2)])
    return f"{rng.choice(['Update:', 'Report:', 'World:'])} {title.split(',')[0]} in the news", edited


def near_duplicate_figures(originals, copies, thresholds) -> list[dict]:
    """Precision and recall of 'is a copy of' over every (copy or original, original) pair."""
    from qa.ingest import wire

    signatures = [wire.signature("\n\n".join(p)) for _, p in originals]
    copy_signatures = [wire.signature("\n\n".join(p)) for _, p in copies]
    rows = []
    for threshold in thresholds:
        found_true = found_false = 0
        for n, sig in enumerate(copy_signatures):
            scored = [(wire.similarity(sig, other), m) for m, other in enumerate(signatures)]
            best = max(scored)
            if best[0] >= threshold:
                found_true += best[1] == n
                found_false += best[1] != n
        # originals against each other: every pair over the threshold is a false copy
        for i in range(len(signatures)):
            for j in range(i + 1, len(signatures)):
                found_false += wire.similarity(signatures[i], signatures[j]) >= threshold
        precision = found_true / max(1, found_true + found_false)
        rows.append({"threshold": threshold, "precision": round(precision, 3), "recall": round(found_true / len(copies), 3),
                     "false_copies": found_false})
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks feeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=4)
    parser.add_argument("--items", type=int, default=25, help="items per feed at the first poll")
    parser.add_argument("--new", type=int, default=5, help="new items per feed before the third poll")
    parser.add_argument("--copies", type=int, default=120, help="edited wire copies for the near-duplicate figures")
    args = parser.parse_args(argv)

    from qa.config import Settings
    from qa.library import Library
    from qa.models.encoders import cpu_flags

    rng = random.Random(7)
    articles = base_articles()
    needed = args.feeds * (args.items + args.new)
    if needed > len(articles):
        raise SystemExit(f"{needed} articles needed, {len(articles)} available: fewer --feeds/--items/--new")
    rng.shuffle(articles)
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags())
    print(f"CPU flags: {flags}; {args.feeds} feeds x {args.items} items, +{args.new} new each")

    with NewsSite() as site, tempfile.TemporaryDirectory() as folder:
        settings = Settings(fetch_allowed_nets="127.0.0.0/8", fetch_host_delay=0.0)
        lib = Library(folder, "feeds", settings=settings)
        lib.search("warm up", k=1)  # the encoder loads outside the timings
        feeds: dict[str, list[dict]] = {}
        published = iter(articles)

        def add_items(feed: str, count: int) -> None:
            for _ in range(count):
                title, paragraphs = next(published)
                path = f"/{feed}/{len(site.routes):05d}.html"
                site.routes[path] = Route(article_page(title, paragraphs, outlet=f"The {feed.title()} Post",
                                                       canonical=site.url(path), published="2024-05-01"))
                feeds[feed].append({"title": title, "link": site.url(path), "published": "2024-05-01"})
            site.routes[f"/{feed}/rss.xml"] = Route(rss(feed, feeds[feed]), "application/rss+xml", conditional=True)

        for n in range(args.feeds):
            feeds[f"feed{n}"] = []
            add_items(f"feed{n}", args.items)
            lib.follow(site.url(f"/feed{n}/rss.xml"), "1h")
        urls = [site.url(f"/{feed}/rss.xml") for feed in feeds]

        started = time.perf_counter()
        first = lib.poll_feeds()
        first_s = time.perf_counter() - started
        added = sum(len(report.added) for _, report in first)
        print(f"first poll: {added} articles in {first_s:.1f} s = {added / first_s:.2f} articles/s "
              f"({sum(report.chunks_added for _, report in first)} chunks)")

        before = len(site.requests)
        started = time.perf_counter()
        second = lib.poll_feeds(only=urls)
        made = site.requests[before:]
        print(f"re-poll, unchanged: {len(made)} requests ({sum(1 for p, h in made if 'If-None-Match' in h)} conditional, "
              f"{sum(1 for _, r in second if r is None)} answered 304) in {time.perf_counter() - started:.3f} s")

        for feed in feeds:
            add_items(feed, args.new)
        before = len(site.requests)
        started = time.perf_counter()
        third = lib.poll_feeds(only=urls)
        print(f"re-poll after {args.new} new items a feed: {len(site.requests) - before} requests, "
              f"{sum(len(r.added) for _, r in third)} articles added in {time.perf_counter() - started:.1f} s")

        # Wire copies.
        originals = articles[: max(args.copies, 150)]
        copies = [edited_copy(title, paragraphs, rng) for title, paragraphs in originals[: args.copies]]
        print(f"\nwire copies: {len(copies)} edited copies against {len(originals)} originals "
              f"({len(originals) * (len(originals) - 1) // 2} original pairs as negatives)")
        print("threshold  precision  recall  false copies")
        for row in near_duplicate_figures(originals, copies, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]):
            print(f"{row['threshold']:9.2f}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['false_copies']:12d}")

        wire_lib = Library(str(Path(folder) / "wire"), "wire", settings=settings, embedder=lib.embedder)
        originals_urls, copy_urls = [], []
        for n, (title, paragraphs) in enumerate(originals):
            site.routes[f"/wire/o{n}.html"] = Route(article_page(title, paragraphs, outlet="Agency Wire"))
            originals_urls.append(site.url(f"/wire/o{n}.html"))
        for n, (title, paragraphs) in enumerate(copies):
            site.routes[f"/copy/c{n}.html"] = Route(article_page(title, paragraphs, outlet="Town Courier"))
            copy_urls.append(site.url(f"/copy/c{n}.html"))
        stored = wire_lib.ingest(originals_urls)
        story_of = {url: article_id for url, article_id in zip(originals_urls, stored.added)}
        started = time.perf_counter()
        report = wire_lib.ingest(copy_urls)
        copy_s = time.perf_counter() - started
        expected = {f"c{n}": story_of[originals_urls[n]] for n in range(len(copies))}
        records = {r.id: r for r in wire_lib.articles()}
        right = wrong = 0
        for copy_id, story in report.copies:
            name = re.search(r"copy-(c\d+)-html", copy_id).group(1)
            right += expected[name] == story
            wrong += expected[name] != story
        stories_false = sum(1 for r in records.values() if r.story and not r.id.startswith("127-0-0-1-copy"))
        print(f"library at threshold {__import__('qa.ingest.wire', fromlist=['THRESHOLD']).THRESHOLD}: "
              f"{right} copies found of {len(copies)} (recall {right / len(copies):.3f}), {wrong + stories_false} wrong "
              f"(precision {right / max(1, right + wrong + stories_false):.3f}); {len(report.added)} copies stored as "
              f"stories; {len(copies) / copy_s:.1f} copies/s")
