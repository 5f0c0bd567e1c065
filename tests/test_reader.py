"""The reader: typed candidates from the evidence sentences (spaCy), ranked by the fitted rule with
the local model's scores; a quote when no candidate fits; refusals decided from the evidence. Small
texts written here; the real local model and embedded Chroma."""

from __future__ import annotations

import pytest

from qa.answer import reader
from qa.answer.types import NOT_FOUND

from .test_answer_kinds import assert_cited_verbatim, assert_is_the_quotes

STORIES = {
    "2010-05-02-zaki.txt": (
        "Zaki returns to Wigan\n\n"
        "Egypt striker Amir Zaki is back at his Premier League club side Wigan Athletic after a row over his late "
        "return from international duty. The 27-year-old missed three matches while he was away. Manager Steve "
        "Bruce said the player had apologised to his team-mates on Monday.\n"),
    "2010-05-03-ford.txt": (
        "Actors back rainforest campaign\n\n"
        "When you see Harrison Ford getting his chest waxed, you know the campaign is serious. The actor appears in "
        "a new advertisement for Conservation International, which says 34 acres of forest are lost every minute. "
        "The group's chief executive, Peter Seligmann, said the film was shot in Los Angeles in two days.\n"),
}


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    from qa.config import Settings
    from qa.models.embeddings import get_embedder
    from qa.library import Library

    folder = tmp_path_factory.mktemp("stories")
    for name, text in STORIES.items():
        (folder / name).write_text(text, encoding="utf-8")
    lib = Library(str(folder / "data"), "reader", settings=Settings(), embedder=get_embedder(Settings()))
    assert lib.ingest([folder]).ok
    return lib


@pytest.mark.parametrize("question, word, label, head", [
    ("Who got his chest waxed?", "who", "PERSON", None),
    ("Which team does Zaki play for?", "which", "ORG", "team"),
    ("How many acres of forest are lost every minute?", "how many", "CARDINAL", None),
    ("When did the player apologise?", "when", "DATE", None),
    ("Where was the film shot?", "where", "GPE", None),
    ("In what country was the film shot?", "which", "GPE", "country"),
])
def test_the_question_says_which_type_it_wants(question, word, label, head):
    want = reader.wanted(question)
    assert want.word == word and label in want.labels and want.head == head


def test_candidates_are_typed_and_never_only_the_questions_words():
    found = reader.candidates("Which team does Zaki play for?", [
        "Egypt striker Amir Zaki is back at his Premier League club side Wigan Athletic after a row."], [1.0])
    by_text = {c.text: c for c in found}
    assert by_text["Wigan Athletic"].label == "ORG" and by_text["Wigan Athletic"].features["type_fit"] == 1.0
    assert "Zaki" not in by_text  # it repeats the question
    assert by_text["Egypt"].features["type_clash"] == 1.0


READ_IN_A_CHILD = """
import json, os, sys
from qa.answer import reader
question, sentences = sys.argv[1], sys.argv[2:]
reader.use_process()
child = reader._process._process.pid
reader._process.send("Who is the manager?", sentences[:1], [1.0])  # sent ahead, then not wanted
there = reader.candidates(question, sentences, [1.0] * len(sentences))
reader._process.send(question, sentences[1:], [1.0] * (len(sentences) - 1))  # as `prefetch` does
ahead = reader.candidates(question, sentences[1:], [1.0] * (len(sentences) - 1))
spacy_in_parent = "spacy" in sys.modules
reader.close_process()  # what `qa ask` does at its end
here = reader.candidates(question, sentences, [1.0] * len(sentences))
same_ahead = ahead == reader.candidates(question, sentences[1:], [1.0] * (len(sentences) - 1))
print(json.dumps({"same": there == here and same_ahead, "found": len(here), "child": child, "me": os.getpid(),
                  "spacy_in_parent": spacy_in_parent}))
"""


def test_a_cold_command_reads_candidates_in_a_forked_child_identically():
    """`qa ask` loads spaCy in a forked child beside its own imports: the candidates it gets back
    are the in-process ones, feature for feature (run in a fresh interpreter: a fork from pytest's
    threads is not what the command does). The child ends with its parent."""
    import json
    import subprocess
    import sys

    sentences = [text.split("\n\n", 1)[1] for text in STORIES.values()]
    done = subprocess.run([sys.executable, "-c", READ_IN_A_CHILD, "Which team does Zaki play for?", *sentences],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["same"] and result["found"] > 5 and result["child"] != result["me"]
    assert not result["spacy_in_parent"]  # the child read them
    import os

    with pytest.raises(ProcessLookupError):  # ended and reaped with its parent (not left a zombie for init)
        os.kill(result["child"], 0)


SPACY_WITHOUT_ITS_CLI = """
import json, sys
from qa.answer import reader
nlp = reader.pipeline()
cli_while_reading = "spacy.cli" in sys.modules
import spacy.cli
print(json.dumps({"pipes": nlp.pipe_names, "cli_while_reading": cli_while_reading,
                  "real_cli": hasattr(spacy.cli, "download"), "info": callable(sys.modules["spacy"].info)}))
"""


def test_the_reader_loads_spacy_without_its_command_line_and_leaves_it_importable():
    """The reader's spaCy skips the CLI's imports (typer, requests, weasel) and the components it
    never runs; a later `import spacy.cli` in the same process still gets the real one."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SPACY_WITHOUT_ITS_CLI], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"pipes": ["tok2vec", "tagger", "parser", "attribute_ruler", "ner"], "cli_while_reading": False,
                      "real_cli": True, "info": True}


@pytest.mark.parametrize("question, answer", [
    ("Who got his chest waxed?", "Harrison Ford"),
    ("Which club does Zaki play for?", "Wigan Athletic"),
    ("How many acres of forest are lost every minute?", "34"),
    ("Where was the film shot?", "Los Angeles"),
])
def test_natural_questions_get_the_typed_span(small_library, question, answer):
    result = small_library.ask(question)
    assert result.kind == "span" and answer in result.text, result
    assert answer in result.citations[0].quote and 0 < result.signals["reader_best"] <= 1
    assert_cited_verbatim(small_library, result)


def test_without_a_fitting_candidate_there_is_no_span(small_library):
    """No number in the evidence for "how many": no candidate reaches the rule's threshold, so the
    answer is the sentence quoted (or a refusal), never a made-up span."""
    question = "How many goals did Zaki score?"
    evidence = small_library.sentences(question)[: reader.SENTENCES]
    found = reader.read(question, evidence, prompt_for=small_library.engine.local_prompt, llm=small_library.engine.llm)
    assert found and found[0].probability < reader.rule()["local"]["threshold"]
    result = small_library.ask(question)
    assert result.kind in ("quote", "not_found")
    if result.kind == "quote":
        assert_is_the_quotes(result)


def test_a_question_the_stories_do_not_cover_is_refused_with_the_closest_passages(small_library):
    result = small_library.ask("Who won the 1998 World Cup final in Paris?")
    assert result.refused and result.text == NOT_FOUND and result.closest


@pytest.mark.parametrize("question", ["¿Quién es el entrenador del equipo?", "what is it?", "Who?", "the of and"])
def test_other_languages_and_stop_words_are_answered_or_refused_never_a_crash(small_library, question):
    result = small_library.ask(question)
    assert result.kind in ("span", "quote", "not_found", "summary", "timeline")


def test_the_model_scores_continuations_without_generating(small_library):
    engine = small_library.engine
    prompt = engine.local_prompt("Which club does Zaki play for?", "Amir Zaki is back at his club side Wigan Athletic.")
    first = engine.llm.score(prompt, ["Wigan Athletic", "an apple pie"])
    assert first[0][0] > first[1][0]  # the answer is likelier than nonsense
    assert engine.llm.score(prompt, ["Wigan Athletic", "an apple pie"]) == first  # the context is restored each time


def test_the_model_finds_a_question_likelier_after_the_sentence_that_answers_it(small_library):
    from qa.answer.answerability import model_signals

    llm = small_library.engine.llm
    question = "Which club does Zaki play for?"
    answering = model_signals(llm, question, "Egypt striker Amir Zaki is back at his Premier League club side Wigan Athletic.")
    unrelated = model_signals(llm, question, "The group's chief executive said the film was shot in Los Angeles in two days.")
    assert answering["question_pmi"] > unrelated["question_pmi"] + 1.0
    assert answering["question_pmi_per_word"] == pytest.approx(answering["question_pmi"] / 6)
    # The answer/refuse rule reads it with the local model.
    assert "question_pmi" in small_library.ask(question).signals


SLOW_CHILD = """
import json, os, sys, time
from qa.answer.reader_process import ReaderProcess
child = ReaderProcess(load=lambda: time.sleep(60), read=lambda *args: None)
pid = child._process.pid
started = time.perf_counter()
child.close()  # as `qa ask` ends, its answer found before spaCy finished loading
print(json.dumps({"pid": pid, "close_s": time.perf_counter() - started}))
"""


def test_a_command_ends_its_reader_child_even_while_it_is_still_loading():
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SLOW_CHILD], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["close_s"] < 1.0
    with pytest.raises(ProcessLookupError):  # gone and reaped, not left loading
        os.kill(result["pid"], 0)
