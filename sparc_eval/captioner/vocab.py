"""Word vocabulary of the caption decoder, built from training captions.

Captions are lower-cased and split into words (letters/digits, with an inner apostrophe kept:
``man's``); punctuation is dropped (the caption metrics drop it too). Words seen fewer than
``min_count`` times map to ``<unk>``. Ids: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>``, then
words by decreasing count (ties alphabetical), so the vocabulary is deterministic.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())


@dataclass
class Vocabulary:
    itos: list[str]

    def __post_init__(self):
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        counts = Counter(w for c in captions for w in words(c))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + ranked[:max_size])

    def encode(self, caption: str, max_len: int) -> list[int]:
        """``<bos> w1 .. wk <eos>`` with at most ``max_len`` tokens in all (long captions are cut before <eos>)."""
        ids = [self.stoi.get(w, UNK) for w in words(caption)][:max_len - 2]
        return [BOS, *ids, EOS]

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first ``<eos>`` (specials dropped), joined by spaces."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return " ".join(out)
