"""The evidence ranking (qa/retrieve/ranking.py): its features say what they claim, and the fitted weights
put the sentence that answers first on small texts of this repository (no NewsQA file needed)."""

import json

import pytest

from qa.retrieve.ranking import FEATURES, RANK_FILE, features, rank_evidence, type_cue
from qa.retrieve.hybrid import Hit, Sentence


def story(*sentences: str, article_id: str = "a1", similarity: float = 0.5) -> list[Sentence]:
    text = " ".join(sentences)
    hit = Hit(text, 0.5, "Story", article_id, 0, len(text), ranks={"vector": 1}, article_chars=len(text))
    found, start = [], 0
    for part in sentences:
        found.append(Sentence(part, start, start + len(part), hit, score=1.0, similarity=similarity))
        start += len(part) + 1
    return found


@pytest.mark.parametrize("question, text, expected", [
    ("When did the dam burst?", "The dam burst on Friday.", 1.0),
    ("When did the dam burst?", "The dam burst after heavy rain.", 0.0),
    ("How many people died?", "Twelve people died in the flood.", 1.0),
    ("How many people died?", "People died in the flood.", 0.0),
    ("Who rescued the boy?", "The boy was rescued by Maria Lopez.", 1.0),
    ("Who met Obama?", "The boy met Obama.", 0.0),  # the only name is the question's own
    ("Where was the car found?", "The car was found in Ohio.", 1.0),
    ("What did the report say?", "The report was long.", 0.0),  # no type asked
])
def test_type_cue_marks_what_the_question_asks_for(question, text, expected):
    assert type_cue(question, text) == expected


def test_the_fitted_weights_are_the_features_the_code_computes():
    fitted = json.loads(RANK_FILE.read_text())
    assert set(fitted["weights"]) == set(FEATURES) and "note" in fitted


def test_features_see_neighbours_and_the_story():
    ranked = story("The mayor spoke on Monday.", "Floods hit the town.", "Twelve people died.")
    ranked[1].similarity = 0.9
    rows = features("How many people died in the floods?", ranked)
    assert rows.shape == (3, len(FEATURES))
    column = {name: rows[:, i] for i, name in enumerate(FEATURES)}
    # Next to the close sentence: the first and third; the third also holds a number.
    assert list(column["neighbour_similarity"]) == [0.9, 0.5, 0.9]
    assert list(column["type_cue"]) == [0.0, 0.0, 1.0]
    assert column["lede"][0] > column["lede"][1] > column["lede"][2]
    assert set(column["first_article"]) == {1.0}


def test_the_sentence_that_answers_ranks_first():
    question = "How many people died in the floods?"
    ranked = story("Floods hit the town of Riverton this week, officials said.",
                   "Twelve people died in the floods, the mayor said.",
                   "The town's football team won its match on Saturday.")
    other = story("Floods are common in spring across the region.", article_id="b2", similarity=0.3)
    best = rank_evidence(question, other + ranked)
    assert best[0].text.startswith("Twelve people died")
    # Each sentence carries its fitted score, best first: the answer/refuse rule reads the top one.
    scores = [s.rank_score for s in best]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]

    from qa.answer.answerability import evidence_signals

    assert evidence_signals(question, best)["rank_score"] == scores[0]
