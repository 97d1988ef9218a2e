"""Object mentions in captions for CHAIR (Rohrbach et al., EMNLP 2018).

An ``ObjectVocabulary`` maps words and two-word expressions to canonical object names (COCO category
names, or the shapes world's kinds). ``mentions(caption)`` parses a caption as CHAIR does: lower-case
and tokenise (words, with hyphenated words kept whole and a possessive "'s" split off, as NLTK's word
tokenizer); singularise each word; merge listed two-word expressions left to right ("hot dog", "baby
elephant" -> elephant; "home plate" names nothing); drop "seat" when "toilet" is mentioned; keep the
words of the vocabulary, each with its canonical object. Repeats are kept (CHAIR-i counts every mention).

``coco`` is the published CHAIR vocabulary, read by the published rules, so values compare with
published ones: the synonym list of LisaAnne/Hallucination (``data/synonyms.txt``, shipped as
``chair_synonyms_rohrbach2018.txt`` with its licence) split on ", " as that script splits it (two
entries carry a stray leading space there, " motor bike" and " cheesecake", and so never match), the
scorer's two-word expressions and special cases (``coco_phrases.txt``), and its singularisation
(pattern.en's ``singularize`` applied to every word): plurals of vocabulary words map back to them,
except the words that singulariser turns into non-words (``PUBLISHED_SINGULAR``: "bus" -> "bu",
"ties" -> "ty", "tennis" -> "tenni", ...), which therefore never count there and never count here.

Other vocabularies (``shapes``, a synonyms file) use a vocabulary-aware singulariser: the plural forms
of every listed word (regular -s/-es/-ies rules, -man -> -men, an irregular table) map back to it, a
listed word is never singularised ("skis" stays "skis"), and every two-word entry is also an expression.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..errors import ConfigError

BUILTIN = ("coco", "shapes")
PUBLISHED = {"coco": ("chair_synonyms_rohrbach2018.txt", "coco_phrases.txt")}
IRREGULAR_PLURALS = {"person": ["people", "persons"], "child": ["children"], "mouse": ["mice"], "goose": ["geese"],
                     "ox": ["oxen"], "foot": ["feet"], "tooth": ["teeth"], "sheep": ["sheep"], "fish": ["fish"],
                     "deer": ["deer"], "cattle": ["cattle"], "knife": ["knives"], "calf": ["calves"],
                     "wolf": ["wolves"], "shelf": ["shelves"], "leaf": ["leaves"], "loaf": ["loaves"],
                     "scissors": ["scissors"], "bus": ["buses", "busses"]}
# What the published scorer's singulariser (pattern.en 3.6 ``singularize``) makes of the words of its
# vocabulary and of their plurals where that differs from the plain singular: non-words, so these
# forms never count as mentions under the published rules ("wine glas" is a listed expression).
PUBLISHED_SINGULAR = {"bus": "bu", "airbus": "airbu", "minibus": "minibu", "busses": "buss", "canoes": "cano",
                      "magpies": "magpy", "ties": "ty", "tennis": "tenni", "sports": "sport", "glass": "glas",
                      "people": "person", "children": "child", "grandchildren": "grandchild", "oxen": "ox",
                      "oxens": "oxs", "oxes": "ox", "skis": "ski"}
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*|'s|\S")


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


def tokens(caption: str) -> list[str]:
    """Lower-cased tokens: words (hyphenated ones whole), a possessive "'s", single punctuation marks."""
    return _TOKEN.findall(caption.lower())


@dataclass(frozen=True)
class ObjectVocabulary:
    """Canonical objects, the entries naming them, two-word expressions and the singulariser's table.

    ``synonyms`` maps each entry (as listed) to its canonical object; ``phrases`` maps a two-word
    expression to the word it is read as (which names an object only if it is an entry); ``singular``
    maps a token to its singular (tokens not in it are kept); ``published`` marks the published rules.
    """

    name: str
    objects: tuple[str, ...]
    synonyms: dict[str, str]
    phrases: dict[str, str]
    singular: dict[str, str] = field(repr=False)
    published: bool = False

    def singularise(self, word: str) -> str:
        return self.singular.get(word, word)

    def mentions(self, caption: str) -> list[tuple[str, str]]:
        """``[(word, canonical object)]`` for every object mention of ``caption``, in order."""
        words = [self.singularise(w) for w in tokens(caption)]
        merged: list[str] = []
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
        return [(w, self.synonyms[w]) for w in merged if w in self.synonyms]

    def objects_in(self, captions: list[str]) -> set[str]:
        """Canonical objects mentioned anywhere in ``captions`` (e.g. an image's references)."""
        return {obj for c in captions for _, obj in self.mentions(c)}

    def canonical(self, name: str) -> str | None:
        """The canonical object of a category name or entry (``None`` if unknown): the name as listed
        (as the published scorer maps instance categories), else its singular."""
        key = name.lower().strip()
        return self.synonyms.get(key) or self.synonyms.get(self.singularise(key))


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _parse_phrases(phrases_text: str, where: str) -> dict[str, str]:
    phrases: dict[str, str] = {}
    for ln in _lines(phrases_text):
        phrase, sep, target = (" ".join(p.split()).lower() for p in ln.partition("->"))
        if not sep or len(phrase.split()) != 2 or not target:
            raise ConfigError(f"{where}: phrase line {ln.strip()!r}: expected 'WORD WORD -> TARGET' or 'WORD WORD -> -'")
        phrases[phrase] = "" if target == "-" else target
    return phrases


def parse_vocabulary(name: str, synonyms_text: str, phrases_text: str = "", where: str = "") -> ObjectVocabulary:
    """Build a vocabulary (vocabulary-aware singulariser) from the text of a synonyms file and
    optionally a phrases file."""
    where = where or name
    synonyms: dict[str, str] = {}
    objects: list[str] = []
    for ln in _lines(synonyms_text):
        entries = [" ".join(e.split()).lower() for e in ln.split(",") if e.strip()]
        canonical = entries[0]
        objects.append(canonical)
        for e in entries:
            if synonyms.get(e, canonical) != canonical:
                raise ConfigError(f"{where}: {e!r} names both {synonyms[e]!r} and {canonical!r}")
            if len(e.split()) > 2:
                raise ConfigError(f"{where}: {e!r}: only words and two-word expressions are supported")
            synonyms[e] = canonical
    if not objects:
        raise ConfigError(f"{where}: no objects listed")
    phrases = _parse_phrases(phrases_text, where)
    for s in synonyms:
        if len(s.split()) == 2:
            phrases.setdefault(s, s)
    known = {w for s in list(synonyms) + list(phrases) for w in s.split()}
    singular: dict[str, str] = {}
    for w in sorted(known):
        for p in plural_forms(w):
            if p != w and p not in known:
                singular.setdefault(p, w)
    return ObjectVocabulary(name, tuple(objects), synonyms, phrases, singular)


def parse_published(name: str, synonyms_text: str, phrases_text: str) -> ObjectVocabulary:
    """The published CHAIR vocabulary: lines split on ", " exactly as the original scorer splits them
    (entries kept as written, so one with a stray space never matches a word), its expressions, and its
    singulariser on the words of the vocabulary (``PUBLISHED_SINGULAR``)."""
    synonyms: dict[str, str] = {}
    objects: list[str] = []
    for ln in synonyms_text.splitlines():
        if not ln.strip():
            continue
        entries = ln.strip().split(", ")
        objects.append(entries[0])
        for e in entries:
            synonyms[e] = entries[0]
    phrases = _parse_phrases(phrases_text, name)
    known = {w for s in list(synonyms) + list(phrases) + list(phrases.values()) for w in s.split()}
    singular: dict[str, str] = {}
    mangled = set(PUBLISHED_SINGULAR.values()) - set(synonyms)  # "glas", "bu": no plurals of non-words
    for w in sorted(known - mangled):
        already_plural = PUBLISHED_SINGULAR.get(w) in synonyms  # "people", "skis": only a stray -s is dropped
        for p in sorted({w + "s"} if already_plural else plural_forms(w) | {w + "s"}):
            if p != w and p not in known:
                singular.setdefault(p, w)
    singular.update(PUBLISHED_SINGULAR)
    return ObjectVocabulary(name, tuple(objects), synonyms, phrases, singular, published=True)


@functools.lru_cache(maxsize=8)
def load_vocabulary(spec: str) -> ObjectVocabulary:
    """``"coco"`` (the published CHAIR list and rules) / ``"shapes"`` (shipped lists) or the path of a
    synonyms file (same format as ``shapes_synonyms.txt``; a file ``<stem>_phrases.txt`` beside it, if
    present, adds phrases)."""
    res = files("sparc_eval.data") / "resources" / "captions"
    if spec in PUBLISHED:
        syn, phr = PUBLISHED[spec]
        return parse_published(spec, (res / syn).read_text(encoding="utf-8"), (res / phr).read_text(encoding="utf-8"))
    if spec in BUILTIN:
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
