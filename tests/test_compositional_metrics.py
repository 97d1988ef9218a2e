"""Probe metrics on hand-computed cases (strict comparisons, ties, macro means) and ARO's caption
perturbations with a hand-tagged caption."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from sparc_eval.data.aro import order_options, perturb, pre_caption
from sparc_eval.metrics.compositional import (
    category_accuracy,
    eligible_categories,
    macro_accuracy,
    selection_correct,
    winoground_scores,
)


def test_selection_is_strict_and_handles_padding():
    scores = np.array([[0.3, 0.2], [0.2, 0.2], [0.1, 0.4], [0.5, 0.1], [0.2, 0.5]])
    correct = np.array([0, 0, 0, 1, 1])
    assert selection_correct(scores, correct).tolist() == [True, False, False, False, True]
    five = np.array([[0.9, 0.1, 0.2, 0.9, np.nan], [0.9, 0.1, 0.2, 0.3, np.nan], [0.5, 0.1, np.nan, np.nan, np.nan]])
    assert selection_correct(five, np.zeros(3, int)).tolist() == [False, True, True]


def test_winoground_scores_hand_cases():
    # s[n, c, i]
    perfect = [[0.9, 0.1], [0.2, 0.8]]
    text_only = [[0.9, 0.95], [0.2, 0.99]]  # image 1 prefers caption 1; caption 0 prefers image 1
    tie = [[0.5, 0.1], [0.5, 0.8]]  # s(c0,i0) == s(c1,i0): text fails, image holds
    nothing = [[0.1, 0.9], [0.8, 0.2]]
    text, image, group = winoground_scores(np.array([perfect, text_only, tie, nothing]))
    assert text.tolist() == [True, True, False, False]
    assert image.tolist() == [True, False, True, False]
    assert group.tolist() == [True, False, False, False]


def test_category_and_macro_accuracy():
    correct = [1, 0, 1, 1, 1, 0, 0]
    cats = ["a", "a", "b", "b", "b", "c", "a"]
    per = category_accuracy(correct, cats)
    assert per == {"a": (pytest.approx(1 / 3), 3), "b": (1.0, 3), "c": (0.0, 1)}
    assert eligible_categories(per) == ["a", "b", "c"]
    assert eligible_categories(per, min_count=2) == ["a", "b"]
    assert eligible_categories(per, exclude=["b"]) == ["a", "c"]
    assert macro_accuracy(per, ["a", "b", "c"]) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert np.isnan(macro_accuracy(per, []))


def test_pre_caption_as_blip():
    assert pre_caption("A man: riding (a) horse!!  on the Beach.\n") == "a man riding a horse on the beach"
    assert pre_caption("one two three four", max_words=3) == "one two three"
    assert pre_caption("two shapes: a red circle, a cat") == "two shapes a red circle, a cat"


TAGGED = [("a", "DT"), ("small", "JJ"), ("dog", "NN"), ("chases", "VBZ"), ("a", "DT"), ("red", "JJ"),
          ("ball", "NN"), ("in", "IN"), ("the", "DT"), ("park", "NN")]


def test_perturbations_keep_words_in_their_roles():
    rng = np.random.default_rng(0)
    words = [t for t, _ in TAGGED]
    nouns = {2, 6, 9}
    adjs = {1, 5}
    for _ in range(20):
        a, b, within, across = (p.split(" ") for p in perturb(TAGGED, rng))
        for out in (a, b, within, across):
            assert sorted(out) == sorted(words)
        assert all(a[i] == words[i] for i in range(10) if i not in nouns | adjs)
        assert {a[i] for i in nouns} == {words[i] for i in nouns} and {a[i] for i in adjs} == {"small", "red"}
        assert all(b[i] == words[i] for i in nouns | adjs)
        for k in range(0, 10, 3):
            assert sorted(within[k:k + 3]) == sorted(words[k:k + 3])
        tris = [words[k:k + 3] for k in range(0, 10, 3)]
        assert any(across == list(itertools.chain.from_iterable(order)) for order in itertools.permutations(tris))


def test_order_options_are_seeded_per_item_and_drop_identical_perturbations():
    def tagger(texts):
        table = {"a small dog chases a red ball in the park": TAGGED, "dogs": [("dogs", "NNS")]}
        return [table[t] for t in texts]

    caps = ["A small dog chases a red ball in the park.", "Dogs"]
    first = order_options(caps, seed=1, max_words=30, tagger=lambda ts: tagger([pre_caption(t) for t in ts]))
    again = order_options(caps, seed=1, max_words=30, tagger=lambda ts: tagger([pre_caption(t) for t in ts]))
    other = order_options(caps, seed=2, max_words=30, tagger=lambda ts: tagger([pre_caption(t) for t in ts]))
    assert first == again and first != other
    assert first[0][0] == "a small dog chases a red ball in the park"
    assert all(o != first[0][0] for o in first[0][1:]) and 2 <= len(first[0]) <= 5
    assert first[1] is None  # a one-word caption has no distinct perturbation
    alone = order_options(caps[:1], seed=1, max_words=30, tagger=lambda ts: tagger([pre_caption(t) for t in ts]))
    assert alone[0] == first[0]
