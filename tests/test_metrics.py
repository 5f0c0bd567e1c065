from qa.answer.metrics import exact_match, normalise_answer, percentile, token_f1


def test_normalisation_drops_case_punctuation_and_articles():
    assert normalise_answer("The  Eiffel Tower!") == "eiffel tower"


def test_exact_match_and_f1_hand_computed():
    assert exact_match("the Eiffel tower", ["Eiffel Tower", "tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    # pred {toshimitsu, motegi, said}, gold {motegi}: P=1/3, R=1 -> F1=0.5
    assert token_f1("Toshimitsu Motegi said", ["Motegi"]) == 0.5
    assert token_f1("Kono", ["Motegi", "Toshimitsu Motegi"]) == 0.0
    # best of the golds counts
    assert token_f1("Toshimitsu Motegi", ["Motegi", "Toshimitsu Motegi"]) == 1.0


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile([7.0], 95) == 7.0
