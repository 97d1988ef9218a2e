"""K-Precision, CHAIR, the object vocabularies and the top-1 search on hand-computed examples."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sparc_eval.errors import ConfigError
from sparc_eval.metrics.chair import ChairCounts, chair, chair_counts
from sparc_eval.metrics.kprecision import (
    chance_k_precision,
    k_precision,
    k_precision_refs,
)
from sparc_eval.task_types.caption_faithfulness import top1_texts
from sparc_eval.text import pos
from sparc_eval.text.normalize import normalize_text, noun_adj_tokens, tokens
from sparc_eval.text.objects import load_vocabulary, parse_vocabulary, plural_forms


def test_normalisation_matches_the_k_precision_reference():
    assert normalize_text("The man's T-shirt, a hat.") == "mans tshirt hat"
    assert normalize_text("  An apple AND the   theatre!") == "apple and theatre"
    assert tokens("A dog; an ant? The end.") == ["dog", "ant", "end"]
    text = "A man's  t-shirt, (the) dog-house: an 'a' and THE end..."
    assert tokens(text) == [t for w in text.split() for t in tokens(w)]


def test_k_precision_hand_computed():
    # response: man riding red horse | reference: man is riding horse -> 3 of 4 supported
    assert k_precision(tokens("A man riding a red horse"), tokens("A man is riding a horse.")) == 0.75
    # counts are clipped: 3 x dog against 1 x dog
    assert k_precision(["dog", "dog", "dog", "cat"], ["dog", "cat"]) == 0.5
    assert k_precision([], ["dog"]) == 0.0
    assert k_precision(["dog"], []) == 0.0
    refs = [["man"], ["horse"]]
    assert k_precision_refs(["man", "horse"], refs, "max") == 0.5
    assert k_precision_refs(["man", "horse"], refs, "union") == 1.0
    assert k_precision_refs(["dog", "dog"], [["dog"], ["dog"]], "union") == 1.0
    with pytest.raises(ValueError):
        k_precision_refs(["a"], refs, "mean")


def test_noun_adjective_tokens():
    cap = "A young boy's red kite is flying over the green hills."
    assert noun_adj_tokens(cap, pos.analyse(cap)) == ["young", "boys", "red", "kite", "green", "hills"]
    # K-Pna of this caption against a reference: young boys red kite green hills vs (boy, kite, hills, red)
    ref = tokens("A boy flies a red kite above hills")
    assert k_precision(noun_adj_tokens(cap, pos.analyse(cap)), ref) == 3 / 6


def test_chance_k_precision_equals_brute_force():
    rng = random.Random(0)
    words = ["a", "b", "c", "d", "e", "f", "g", "h"]
    resp = [[rng.choice(words) for _ in range(rng.randint(0, 6))] for _ in range(40)]
    refs = [[[rng.choice(words) for _ in range(rng.randint(1, 7))] for _ in range(rng.randint(1, 4))] for _ in range(25)]
    for mode in ("max", "union"):
        want = [np.mean([k_precision_refs(r, rf, mode) for r in resp]) for rf in refs]
        np.testing.assert_allclose(chance_k_precision(resp, refs, mode, block=7), want, rtol=0, atol=1e-12)


def test_plurals_and_coco_mentions():
    assert plural_forms("bus") == {"buses", "busses"} and plural_forms("puppy") == {"puppies"}
    assert plural_forms("man") == {"men", "mans"} and plural_forms("knife") == {"knives"}
    v = load_vocabulary("coco")  # the published CHAIR list and rules (tests/test_chair_published.py)
    assert len(v.objects) == 80 and v.objects[0] == "person" and v.objects[-1] == "toothbrush"
    m = v.mentions
    assert m("Two men riding bikes past the hot dogs") == [("man", "person"), ("bike", "bicycle"), ("hot dog", "hot dog")]
    assert m("A baby elephant next to a teddy bear") == [("elephant", "elephant"), ("teddy bear", "teddy bear")]
    assert m("the seat of the toilet is up") == [("toilet", "toilet")]
    assert m("a batter at home plate near the train tracks") == [("train", "train")]
    assert m("a pair of skis and one ski") == [("ski", "skis"), ("ski", "skis")]
    assert m("women with puppies, knives and buses") == [("woman", "person"), ("puppy", "dog"), ("knife", "knife"),
                                                          ("bus", "bus")]
    assert m("A man in a bow tie") == [("man", "person"), ("tie", "tie")]
    assert v.canonical("dining table") == "dining table" and v.canonical("sofa") == "couch"
    s = load_vocabulary("shapes")
    assert s.objects == ("circle", "square", "triangle", "diamond", "star", "cross")
    assert s.mentions("two red crosses, a circle") == [("cross", "cross"), ("circle", "circle")]


def test_vocabulary_files_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="names both"):
        parse_vocabulary("bad", "dog, pup\ncat, pup\n")
    with pytest.raises(ConfigError, match="phrase line"):
        parse_vocabulary("bad", "dog\n", "baby dog dog\n")
    custom = tmp_path / "mine_synonyms.txt"
    custom.write_text("# mine\nvase, urn\n")
    (tmp_path / "mine_phrases.txt").write_text("flower pot -> vase\n")
    v = load_vocabulary(str(custom))
    assert v.mentions("two urns and a flower pot") == [("urn", "vase"), ("vase", "vase")]
    with pytest.raises(ConfigError, match="does not exist"):
        load_vocabulary(str(tmp_path / "missing.txt"))


def test_chair_hand_computed():
    v = load_vocabulary("coco")
    gt = {"person", "dog"}
    caps = ["A man and his dog on a couch", "Two dogs", "A woman holding a cat and a remote next to a cat"]
    counts = [chair_counts([o for _, o in v.mentions(c)], gt) for c in caps]
    assert counts[0] == ChairCounts(3, ("couch",))
    assert counts[1] == ChairCounts(1, ())
    assert counts[2] == ChairCounts(4, ("cat", "remote", "cat"))
    # CHAIR-i: 4 hallucinated of 8 mentions; CHAIR-s: 2 of 3 captions
    assert chair(counts) == {"CHAIR_i": 50.0, "CHAIR_s": pytest.approx(200 / 3)}
    assert chair([ChairCounts(0, ())]) == {"CHAIR_i": 0.0, "CHAIR_s": 0.0}


def test_top1_texts_is_exact_blockwise_and_breaks_ties_per_image():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(37, 8, generator=g), torch.randn(101, 8, generator=g)
    best, tied = top1_texts(img, txt, block=5, text_block=16)
    assert torch.equal(best, (img @ txt.T).argmax(1)) and bool((tied == 1).all())
    # All scores equal: every text ties; the pick is seeded, varies across images, and ignores block sizes.
    zeros_i, zeros_t = torch.zeros(50, 4), torch.zeros(30, 4)
    a, ta = top1_texts(zeros_i, zeros_t, block=7, text_block=4, seed=3)
    b, _ = top1_texts(zeros_i, zeros_t, block=50, text_block=30, seed=3)
    c, _ = top1_texts(zeros_i, zeros_t, seed=4)
    assert torch.equal(a, b) and bool((ta == 30).all()) and len(set(a.tolist())) > 10 and not torch.equal(a, c)
