"""Object mentions in captions for CHAIR (Rohrbach et al., EMNLP 2018), with a vocabulary-aware singulariser.

An ``ObjectVocabulary`` maps words and two-word expressions to canonical object names (COCO category
names, or the shapes world's kinds). ``mentions(caption)`` parses a caption as CHAIR does:
lower-case and split into alphabetic words; singularise each word; merge two-word expressions left
to right ("hot dog", "teddy bear", "baby elephant" -> elephant; "home plate" names nothing); drop
"seat" when "toilet" is mentioned; keep the words of the vocabulary, each with its canonical object.
Repeats are kept (CHAIR-i counts every mention).

Singularisation only has to be right for vocabulary words, so instead of a general English
singulariser the plural forms of every vocabulary word are generated (regular -s/-es/-ies/-ves rules,
-man -> -men, and an irregular table) and mapped back; any other word is left as it is. A word that is
itself in the vocabulary is never singularised ("skis" stays the COCO category "skis").
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import ConfigError

BUILTIN = ("coco", "shapes")
IRREGULAR_PLURALS = {"person": ["people", "persons"], "child": ["children"], "mouse": ["mice"], "goose": ["geese"],
                     "ox": ["oxen"], "foot": ["feet"], "tooth": ["teeth"], "sheep": ["sheep"], "fish": ["fish"],
                     "deer": ["deer"], "cattle": ["cattle"], "knife": ["knives"], "calf": ["calves"],
                     "wolf": ["wolves"], "shelf": ["shelves"], "leaf": ["leaves"], "loaf": ["loaves"],
                     "scissors": ["scissors"], "bus": ["buses", "busses"]}
_WORD = re.compile(r"[a-z]+")


def plural_forms(word: str) -> set[str]:
    """Plural spellings of a singular noun: ``"box"`` -> ``{"boxes"}``, ``"puppy"`` -> ``{"puppies"}``."""
    if word in IRREGULAR_PLURALS:
        return set(IRREGULAR_PLURALS[word])
    if word.endswith("man"):
        return {word[:-3] + "men", word + "s"}
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return {word + "es"}
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return {word[:-1] + "ies"}
    if word.endswith("o"):
        return {word + "s", word + "es"}
    return {word + "s"}


@dataclass(frozen=True)
class ObjectVocabulary:
    """Canonical objects, the words/expressions naming them, and expressions that name nothing."""

    name: str
    objects: tuple[str, ...]
    synonyms: dict[str, str]
    phrases: dict[str, str | None]
    singular: dict[str, str] = field(repr=False)

    def singularise(self, word: str) -> str:
        return word if word in self.synonyms else self.singular.get(word, word)

    def mentions(self, caption: str) -> list[tuple[str, str]]:
        """``[(word, canonical object)]`` for every object mention of ``caption``, in order."""
        words = [self.singularise(w) for w in _WORD.findall(caption.lower())]
        merged: list[str | None] = []
        i = 0
        while i < len(words):
            pair = " ".join(words[i:i + 2])
            if i + 1 < len(words) and pair in self.phrases:
                merged.append(self.phrases[pair])
                i += 2
            else:
                merged.append(words[i])
                i += 1
        if "toilet" in merged:
            merged = [w for w in merged if w != "seat"]
        return [(w, self.synonyms[w]) for w in merged if w is not None and w in self.synonyms]

    def objects_in(self, captions: list[str]) -> set[str]:
        """Canonical objects mentioned anywhere in ``captions`` (e.g. an image's references)."""
        return {obj for c in captions for _, obj in self.mentions(c)}

    def canonical(self, name: str) -> str | None:
        """The canonical object of a category name or synonym (``None`` if unknown)."""
        return self.synonyms.get(self.singularise(name.lower().strip()))


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def parse_vocabulary(name: str, synonyms_text: str, phrases_text: str = "", where: str = "") -> ObjectVocabulary:
    """Build a vocabulary from the text of a synonyms file (and optionally a phrases file)."""
    synonyms: dict[str, str] = {}
    objects: list[str] = []
    for ln in _lines(synonyms_text):
        entries = [e.strip().lower() for e in ln.split(",") if e.strip()]
        canonical = entries[0]
        objects.append(canonical)
        for e in entries:
            if synonyms.get(e, canonical) != canonical:
                raise ConfigError(f"{where or name}: {e!r} names both {synonyms[e]!r} and {canonical!r}")
            synonyms[e] = canonical
    if not objects:
        raise ConfigError(f"{where or name}: no objects listed")
    phrases: dict[str, str | None] = {}
    for ln in _lines(phrases_text):
        phrase, sep, target = (p.strip().lower() for p in ln.partition("->"))
        if not sep or len(phrase.split()) != 2 or not target:
            raise ConfigError(f"{where or name}: phrase line {ln!r}: expected 'WORD WORD -> WORD' or 'WORD WORD -> -'")
        phrases[phrase] = None if target == "-" else target
        if target != "-":
            synonyms.setdefault(target, synonyms.get(target, target))
    for s in list(synonyms):
        if len(s.split()) == 2:
            phrases.setdefault(s, s)
        elif len(s.split()) > 2:
            raise ConfigError(f"{where or name}: {s!r}: only words and two-word expressions are supported")
    known = {w for s in list(synonyms) + list(phrases) for w in s.split()}
    singular: dict[str, str] = {}
    for w in sorted(known):
        for p in plural_forms(w):
            if p != w and p not in known:
                singular.setdefault(p, w)
    return ObjectVocabulary(name, tuple(objects), synonyms, phrases, singular)


@functools.lru_cache(maxsize=8)
def load_vocabulary(spec: str) -> ObjectVocabulary:
    """``"coco"`` / ``"shapes"`` (shipped lists) or the path of a synonyms file (same format; a file
    ``<stem>_phrases.txt`` beside it, if present, adds phrases)."""
    if spec in BUILTIN:
        res = files("sparc_eval.data") / "resources" / "captions"
        syn = (res / f"{spec}_synonyms.txt").read_text(encoding="utf-8")
        phr_path = res / f"{spec}_phrases.txt"
        phr = phr_path.read_text(encoding="utf-8") if phr_path.is_file() else ""
        return parse_vocabulary(spec, syn, phr, f"{spec} object vocabulary")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"chair_objects {spec!r}: expected one of {BUILTIN} or a synonyms file; {path} does not exist")
    phr_path = path.with_name(path.stem.replace("_synonyms", "") + "_phrases.txt")
    phr = phr_path.read_text(encoding="utf-8") if phr_path.is_file() and phr_path != path else ""
    return parse_vocabulary(path.stem, path.read_text(encoding="utf-8"), phr, str(path))
