"""Caption normalisation and tokenisation of the K-Precision reference (Adlakha et al. 2024).

``normalize_text`` is the SQuAD-style normaliser of ``McGill-NLP/instruct-qa``
(``instruct_qa/evaluation/__init__.py``): lower-case, delete every ASCII punctuation character
(``string.punctuation``), replace the articles a/an/the by spaces, collapse whitespace. Tokens are the
whitespace-separated words of the normalised text. Normalising word by word gives the same tokens as
normalising the whole text (punctuation never holds whitespace), which is what ``noun_adj_tokens``
relies on to keep the tokens of nouns and adjectives only.
"""
from __future__ import annotations

import re
import string
from collections.abc import Sequence

from .pos import NOUN_ADJ, Token, word_tags

ARTICLES = ("a", "an", "the")
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLE_RE = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: str) -> str:
    """``"The man's T-shirt, a hat."`` -> ``"mans tshirt hat"``."""
    return " ".join(_ARTICLE_RE.sub(" ", text.lower().translate(_PUNCT)).split())


def tokens(text: str) -> list[str]:
    """K-Precision tokens: the words of ``normalize_text(text)``."""
    return normalize_text(text).split()


def noun_adj_tokens(text: str, tagged: Sequence[Token]) -> list[str]:
    """The K-Precision tokens of ``text`` that come from words holding a noun or adjective.

    ``tagged`` is ``pos.analyse(text)``. A whitespace word counts when any of its spaCy tokens is
    tagged NOUN (incl. proper nouns) or ADJ (``"man's"`` counts through ``man``); its normalised form
    is kept unless it is empty (pure punctuation) or an article.
    """
    out: list[str] = []
    for word, tags in word_tags(text, tagged):
        if tags & NOUN_ADJ:
            out.extend(tokens(word))
    return out
