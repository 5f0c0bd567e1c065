"""Whole-article and over-time questions: summaries and key points, the latest on a topic, dates
in questions. Pure parsing first, then the real library and local model on the seed article and on
the dated articles in evals/datasets/timeline/, then the chat-model path (SmolLM2)."""

from __future__ import annotations

from datetime import date

import pytest

from qa.answer.dates import read_dates
from qa.errors import InputError
from qa.answer.questions import answer_kind

from .conftest import ROOT
from .test_answer_kinds import assert_cited_verbatim, chat_engine

SEED_ID = "2019-11-12-japan-us-gsomia"
SEED_DAY = date(2019, 11, 12)  # a Tuesday
TIMELINE = ROOT / "evals" / "datasets" / "timeline"


# --- dates in questions ---------------------------------------------------------------------------
@pytest.mark.parametrize("question, start, end, rest", [
    ("What did Motegi say in November 2019?", "2019-11-01", "2019-11-30", "What did Motegi say?"),
    ("What happened on Tuesday?", "2019-11-12", "2019-11-12", "What happened?"),
    ("What happened last Tuesday?", "2019-11-05", "2019-11-05", "What happened?"),
    ("Who spoke on Monday?", "2019-11-11", "2019-11-11", "Who spoke?"),
    ("What happened since 2018?", "2018-01-01", None, "What happened?"),
    ("What happened before March 2019?", None, "2019-02-28", "What happened?"),
    ("What happened between November 1, 2019 and November 15, 2019?", "2019-11-01", "2019-11-15", "What happened?"),
    ("What happened on the 12th of November 2019?", "2019-11-12", "2019-11-12", "What happened?"),
    ("Any news from 2019-11-12?", "2019-11-12", None, "Any news?"),
])
def test_date_phrases_become_ranges_and_leave_the_question(question, start, end, rest):
    dated, without = read_dates(question, today=date(2026, 12, 2), article_day=SEED_DAY)
    assert (dated.date_from, dated.date_to, without) == (start, end, rest)


def test_relative_dates_count_from_today_and_weekdays_from_the_article():
    today = date(2026, 12, 2)
    assert read_dates("What happened yesterday?", today=today)[0].date_from == "2026-12-01"
    week = read_dates("What happened last week?", today=today, article_day=SEED_DAY)[0]
    assert (week.date_from, week.date_to, week.counted_from) == ("2026-11-25", "2026-12-02", "today")
    assert read_dates("What happened on Tuesday?", today=today, article_day=SEED_DAY)[0].counted_from == "article"


@pytest.mark.parametrize("question", ["May I ask who won?", "How many people lived there in 1850s?", "Who won 2019 awards?",
                                      "What is the Treaty of Paris about?"])
def test_words_that_only_look_like_dates_are_left_alone(question):
    assert read_dates(question, today=date(2026, 12, 2)) == (None, question)


@pytest.mark.parametrize("question, words", [
    ("What happened on February 30, 2019?", "does not exist: February 30, 2019"),
    ("What happened on 2019-13-45?", "does not exist: 2019-13-45"),
    ("What happened between November 15, 2019 and November 1, 2019?", "ends before it starts"),
])
def test_impossible_dates_are_one_line_errors_naming_the_question(question, words):
    with pytest.raises(InputError) as error:
        read_dates(question, today=date(2026, 12, 2))
    assert str(error.value).startswith("question: ") and words in str(error.value) and "\n" not in str(error.value)


# --- what a question asks for ---------------------------------------------------------------------
@pytest.mark.parametrize("question, kind, detail", [
    ("What is this article about?", "summary", "summary"),
    ("Summarise the story, please", "summary", "summary"),
    ("What's the gist?", "summary", "summary"),
    ("Give me the key points of the article.", "summary", "key_points"),
    ("What are the main takeaways?", "summary", "key_points"),
    ("tl;dr", "summary", "tldr"),
    ("TLDR?", "summary", "tldr"),
    ("Can you sum it up in one sentence?", "summary", "tldr"),
    ("What's the latest on GSOMIA?", "timeline", "GSOMIA"),
    ("Any news on the intelligence pact?", "timeline", "intelligence pact"),
    ("What happened with the ferry strike?", "timeline", "ferry strike"),
    ("How did the GSOMIA dispute develop?", "timeline", "GSOMIA dispute"),
    # factoid questions stay factoid questions
    ("What happened to the Normans in 1066?", "span", None),
    ("What was the treaty about?", "span", None),
    ("Who said GSOMIA scrapping was a misjudgment?", "span", None),
    ("Why did South Korea decide to end GSOMIA?", "quote", None),
])
def test_whole_article_and_over_time_questions_are_recognised(question, kind, detail):
    assert answer_kind(question) == (kind, detail)


# --- the six questions, on the seed article with the local model ----------------------------
def lede(lib) -> str:
    return lib.article_text(SEED_ID).split(". ")[0]


@pytest.mark.parametrize("question", ["What is this article about?", "Summarize the article.", "What's this story all about?"])
def test_summary_starts_with_the_lede_and_cites_every_sentence(seeded_library, question):
    answer = seeded_library.ask(question)
    assert answer.kind == "summary" and 2 <= len(answer.citations) <= 3, answer
    assert answer.citations[0].quote.startswith(lede(seeded_library))
    assert [c.start for c in answer.citations] == sorted(c.start for c in answer.citations)  # article order
    for c in answer.citations:
        assert f"{c.quote} [{c.n}]" in answer.text
    assert_cited_verbatim(seeded_library, answer)


@pytest.mark.parametrize("question", ["Give me the key points of the article.", "What are the main points of the story?"])
def test_key_points_are_a_cited_list_that_includes_the_lede(seeded_library, question):
    answer = seeded_library.ask(question)
    lines = answer.text.splitlines()
    assert answer.kind == "summary" and len(lines) == len(answer.citations) >= 4
    assert all(line.startswith("- ") and line.endswith(f"[{n}]") for n, line in enumerate(lines, 1))
    assert answer.citations[0].quote.startswith(lede(seeded_library))
    assert len({c.quote for c in answer.citations}) == len(answer.citations)
    assert_cited_verbatim(seeded_library, answer)


@pytest.mark.parametrize("question", ["tl;dr", "Give me the short version."])
def test_tldr_is_one_or_two_sentences(seeded_library, question):
    answer = seeded_library.ask(question)
    assert answer.kind == "summary" and 1 <= len(answer.citations) <= 2
    assert answer.citations[0].quote.startswith(lede(seeded_library))


@pytest.mark.parametrize("question", ["What's the latest on GSOMIA?", "Any news about GSOMIA?", "What happened with GSOMIA?"])
def test_latest_cites_the_article_with_its_date(seeded_library, question):
    answer = seeded_library.ask(question)
    assert answer.kind == "timeline" and len(answer.citations) == 1
    assert answer.text.startswith("2019-11-12 — Japan, US say 3-way ties")
    assert "GSOMIA" in answer.citations[0].quote and answer.citations[0].published == "2019-11-12"
    assert_cited_verbatim(seeded_library, answer)


@pytest.mark.parametrize("question", ["What happened on Tuesday?", "What happened on November 12, 2019?", "What happened in 2019?"])
def test_what_happened_on_a_date_lists_that_days_articles(seeded_library, question):
    answer = seeded_library.ask(question)
    assert answer.kind == "timeline" and answer.citations[0].article_id == SEED_ID
    assert answer.citations[0].quote.startswith(lede(seeded_library))
    assert answer.signals["date_from"] <= "2019-11-12" <= answer.signals["date_to"]
    assert "articles from 2019-" in answer.dates


@pytest.mark.parametrize("question", ["What did Motegi say in November 2019?", "What did Motegi say on Tuesday?"])
def test_a_dated_question_quotes_motegi(seeded_library, question):
    answer = seeded_library.ask(question)
    assert answer.kind == "quote" and "Motegi" in answer.text and "said" in answer.text
    assert answer.signals["date_from"].startswith("2019-11") and "Motegi say" in answer.question
    assert_cited_verbatim(seeded_library, answer)


def test_a_range_with_no_articles_says_so_with_the_closest_dates(seeded_library):
    answer = seeded_library.ask("What happened in 2018?")
    assert answer.refused and answer.text.startswith("No articles from 2018-01-01 to 2018-12-31")
    assert "closest dates available: 2019-11-12" in answer.text


def test_a_year_the_article_speaks_of_is_not_a_publication_filter(tmp_path, embedder):
    from qa.library import Library

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "2019-11-12-quake.txt").write_text(
        "Town remembers quake\n\nThe town of Norcia was destroyed by an earthquake in 1997, officials recalled on Tuesday. "
        "Its rebuilt basilica reopened to visitors this week after years of work.\n", encoding="utf-8")
    lib = Library(str(tmp_path / "data"), "quake", embedder=embedder)
    lib.ingest([tmp_path / "a"])
    answer = lib.ask("Which town was destroyed in 1997?")
    assert not answer.refused and "Norcia" in answer.text and not answer.dates


def test_an_impossible_date_is_a_one_line_error(seeded_library):
    with pytest.raises(InputError, match="does not exist: February 30, 2019"):
        seeded_library.ask("What happened on February 30, 2019?")


def test_factoid_answers_stay_factoid(seeded_library):
    answer = seeded_library.ask("Who said GSOMIA scrapping was a misjudgment?")
    assert answer.kind == "span" and "Motegi" in answer.text and not answer.dates


# --- several dated articles -------------------------------------------------------------------------
@pytest.fixture
def timeline_library(tmp_path, embedder):
    from qa.library import Library

    lib = Library(str(tmp_path / "data"), "timeline", embedder=embedder)
    report = lib.ingest([TIMELINE, ROOT / "seeds"])
    assert report.ok and len(report.added) == 7
    return lib


def test_latest_lists_a_topics_articles_newest_first(timeline_library):
    answer = timeline_library.ask("What's the latest on the ferry strike?")
    ids = [c.article_id for c in answer.citations]
    assert answer.kind == "timeline" and ids[:3] == [
        "2024-03-09-ferry-strike-ends", "2024-03-06-ferry-strike-talks-resume", "2024-03-04-ferry-strike-begins"]
    assert not {"2024-03-05-floating-library-opens", "2024-03-08-reservoir-levels-fall", SEED_ID} & set(ids)
    assert answer.text.splitlines()[0].startswith("- 2024-03-09 — Ferry strike ends with pay deal: ")
    assert_cited_verbatim(timeline_library, answer)


def test_date_ranges_pick_the_articles_of_those_dates(timeline_library):
    answer = timeline_library.ask("What happened since March 7, 2024?")
    assert [c.article_id for c in answer.citations] == ["2024-03-09-ferry-strike-ends", "2024-03-08-reservoir-levels-fall"]
    # The newest article is a Saturday: "Tuesday" is the Tuesday before it.
    answer = timeline_library.ask("What happened on Tuesday?")
    assert [c.article_id for c in answer.citations] == ["2024-03-05-floating-library-opens"]
    assert "counted from the newest article (2024-03-09)" in answer.dates


def test_last_week_counts_from_the_newest_article_when_the_library_is_older(timeline_library):
    answer = timeline_library.ask("What happened last week?")
    assert answer.kind == "timeline" and answer.signals["date_to"] == "2024-03-09"
    assert "the library holds nothing that recent" in answer.dates
    assert answer.citations[0].article_id == "2024-03-09-ferry-strike-ends"


def test_summary_of_a_named_article_among_several(timeline_library):
    answer = timeline_library.ask("Give me the key points of the story about the reservoir.")
    assert {c.article_id for c in answer.citations} == {"2024-03-08-reservoir-levels-fall"}
    answer = timeline_library.ask('What is "Ferry strike ends with pay deal" about?')
    assert answer.citations[0].quote.startswith("PORTVALE — Harbour ferry crews voted Saturday")


def test_summary_follows_the_conversation(timeline_library):
    history = [("Who is the union secretary?", "Daniel Reyes [1]")]
    answer = timeline_library.ask("Summarise it.", history=history)
    assert answer.kind == "summary" and "ferry" in answer.citations[0].title.lower()


# --- the chat-model path ----------------------------------------------------------------------------
def test_chat_model_writes_the_summary_with_citations(seeded_library, chat_server):
    from qa.answer.overview import summary_picks

    engine = chat_engine(seeded_library, chat_server)
    items = list(engine.stream("What is this article about?"))
    answer = items[-1]
    assert answer.kind == "summary" and answer.citations and all(isinstance(t, str) for t in items[:-1])
    assert_cited_verbatim(seeded_library, answer)
    _, sentences, vectors = seeded_library.article_sentences(SEED_ID)
    chosen = {sentences[i].text for i in summary_picks(sentences, vectors, "summary")}
    assert {c.quote for c in answer.citations} <= chosen  # the model only sees (and cites) the chosen sentences
    if answer.text != " ".join(f"{c.quote} [{c.n}]" for c in answer.citations):  # the model's own words
        assert answer.grounded >= 0.5 and "[" in answer.text
