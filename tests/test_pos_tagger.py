"""The offline POS tagger (``sparc_eval.text.pos``) against hand-labelled COCO-style captions.

The labels below were written by hand with the universal tagset (Petrov et al. 2012) as mapped from
Penn Treebank conventions: every "to" is PRT (TO), auxiliaries are VERB, "there" (existential) and
relative "that" are DET, possessive "'s" is PRT, "several"/"many" are ADJ (JJ), "while"/"near" ADP (IN).
The captions are written in the style of COCO (not copied from it) plus shapes-world captions.
"""
from __future__ import annotations

import os

from sparc_eval.text import pos

LABELLED = """
A/DET man/NOUN riding/VERB a/DET wave/NOUN on/ADP top/NOUN of/ADP a/DET surfboard/NOUN ./PUNCT
Two/NUM dogs/NOUN are/VERB playing/VERB with/ADP a/DET frisbee/NOUN in/ADP the/DET park/NOUN ./PUNCT
A/DET kitchen/NOUN with/ADP white/ADJ cabinets/NOUN and/CONJ a/DET stainless/ADJ steel/NOUN refrigerator/NOUN ./PUNCT
A/DET red/ADJ double/ADJ decker/NOUN bus/NOUN driving/VERB down/ADP a/DET city/NOUN street/NOUN ./PUNCT
A/DET woman/NOUN holding/VERB an/DET umbrella/NOUN while/ADP walking/VERB in/ADP the/DET rain/NOUN ./PUNCT
There/DET is/VERB a/DET cat/NOUN sleeping/VERB on/ADP the/DET couch/NOUN ./PUNCT
A/DET plate/NOUN of/ADP food/NOUN with/ADP broccoli/NOUN and/CONJ rice/NOUN on/ADP a/DET wooden/ADJ table/NOUN ./PUNCT
A/DET young/ADJ boy/NOUN swinging/VERB a/DET baseball/NOUN bat/NOUN at/ADP a/DET ball/NOUN ./PUNCT
Several/ADJ people/NOUN skiing/VERB down/ADP a/DET snowy/ADJ hill/NOUN ./PUNCT
A/DET giraffe/NOUN standing/VERB in/ADP a/DET grassy/ADJ field/NOUN near/ADP trees/NOUN ./PUNCT
The/DET bathroom/NOUN has/VERB a/DET toilet/NOUN ,/PUNCT a/DET sink/NOUN and/CONJ a/DET large/ADJ mirror/NOUN ./PUNCT
A/DET person/NOUN on/ADP a/DET motorcycle/NOUN parked/VERB beside/ADP a/DET brick/NOUN building/NOUN ./PUNCT
Two/NUM zebras/NOUN grazing/VERB on/ADP dry/ADJ grass/NOUN in/ADP the/DET sun/NOUN ./PUNCT
A/DET little/ADJ girl/NOUN is/VERB eating/VERB a/DET slice/NOUN of/ADP pizza/NOUN ./PUNCT
An/DET old/ADJ clock/NOUN tower/NOUN against/ADP a/DET cloudy/ADJ blue/ADJ sky/NOUN ./PUNCT
A/DET man/NOUN in/ADP a/DET suit/NOUN talking/VERB on/ADP his/PRON cell/NOUN phone/NOUN ./PUNCT
Some/DET sheep/NOUN are/VERB walking/VERB along/ADP a/DET dirt/NOUN road/NOUN ./PUNCT
A/DET laptop/NOUN computer/NOUN and/CONJ a/DET mouse/NOUN on/ADP a/DET messy/ADJ desk/NOUN ./PUNCT
A/DET tennis/NOUN player/NOUN swings/VERB her/PRON racket/NOUN at/ADP the/DET ball/NOUN ./PUNCT
A/DET black/ADJ and/CONJ white/ADJ photo/NOUN of/ADP an/DET elephant/NOUN ./PUNCT
Three/NUM horses/NOUN that/DET are/VERB pulling/VERB a/DET wooden/ADJ cart/NOUN ./PUNCT
A/DET bowl/NOUN full/ADJ of/ADP oranges/NOUN and/CONJ bananas/NOUN ./PUNCT
A/DET small/ADJ airplane/NOUN flying/VERB over/ADP the/DET ocean/NOUN ./PUNCT
A/DET skateboarder/NOUN does/VERB a/DET trick/NOUN on/ADP a/DET ramp/NOUN ./PUNCT
Two/NUM children/NOUN sitting/VERB at/ADP a/DET table/NOUN with/ADP a/DET birthday/NOUN cake/NOUN ./PUNCT
The/DET train/NOUN is/VERB stopped/VERB at/ADP the/DET station/NOUN ./PUNCT
A/DET man/NOUN 's/PRT hand/NOUN holding/VERB a/DET hot/ADJ dog/NOUN with/ADP mustard/NOUN ./PUNCT
Many/ADJ people/NOUN are/VERB flying/VERB kites/NOUN at/ADP the/DET beach/NOUN ./PUNCT
a/DET red/ADJ circle/NOUN to/PRT the/DET left/NOUN of/ADP a/DET blue/ADJ star/NOUN
three/NUM shapes/NOUN on/ADP a/DET grey/ADJ background/NOUN :/PUNCT a/DET green/ADJ square/NOUN ,/PUNCT a/DET white/ADJ cross/NOUN and/CONJ a/DET black/ADJ diamond/NOUN
a/DET large/ADJ triangle/NOUN coloured/VERB orange/ADJ
"""


def _gold() -> list[tuple[str, list[tuple[str, str]]]]:
    out = []
    for line in LABELLED.strip().splitlines():
        pairs = [tuple(item.rsplit("/", 1)) for item in line.split()]
        words = [w for w, _ in pairs]
        text = " ".join(words).replace(" .", ".").replace(" ,", ",").replace(" :", ":").replace(" 's", "'s")
        out.append((text, pairs))
    return out


def test_accuracy_on_hand_labelled_captions():
    gold = _gold()
    n_tokens = sum(len(p) for _, p in gold)
    assert n_tokens >= 100 and all(t in pos.TAGSET for _, p in gold for _, t in p)
    predicted = pos.tag_many([text for text, _ in gold])
    correct = 0
    errors = []
    for (text, pairs), tagged in zip(gold, predicted):
        assert [w for w, _ in tagged] == [w for w, _ in pairs], f"tokenisation differs for {text!r}"
        for (w, g), (_, p) in zip(pairs, tagged):
            correct += g == p
            if g != p:
                errors.append(f"{w}: gold {g}, tagged {p}")
    accuracy = correct / n_tokens
    print(f"POS accuracy {accuracy:.4f} on {n_tokens} tokens; errors: {errors}")
    assert accuracy >= 0.90, errors
    # One by one gives the same tags as batched.
    assert pos.tag(gold[0][0]) == predicted[0]


def test_tags_carry_penn_and_ud_and_pipeline_is_offline_package():
    toks = pos.analyse("Two brown dogs run.")
    assert [t.tag for t in toks] == ["CD", "JJ", "NNS", "VBP", "."]
    assert [t.pos for t in toks] == ["NUM", "ADJ", "NOUN", "VERB", "PUNCT"]
    assert toks[2].ud == "NOUN" and toks[2].idx == 10 and toks[2].whitespace == " "
    info = pos.pipeline_info()
    assert info["pipeline_version"] == "3.8.0" and info["components"] == ["tok2vec", "tagger", "attribute_ruler"]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_word_tags_align_spacy_tokens_with_whitespace_words():
    text = "A man's  t-shirt, and two dogs"
    words = pos.word_tags(text, pos.analyse(text))
    assert [w for w, _ in words] == ["A", "man's", "t-shirt,", "and", "two", "dogs"]
    assert words[1][1] == {"NOUN", "PRT"} and "NOUN" in words[2][1] and "PUNCT" in words[2][1]
    assert words[3][1] == {"CONJ"} and words[5][1] == {"NOUN"}
    assert pos.word_tags("", []) == []
