"""CHAIR object hallucination (Rohrbach et al., EMNLP 2018) from object mentions (lower is better).

Per caption: every mention of a vocabulary object (canonical name, repeats counted; see
``sparc_eval.text.objects``) is *hallucinated* when the object is not among the image's
ground-truth objects (instance annotations and objects mentioned in its reference captions).
- CHAIR-i = hallucinated mentions / all mentions, over all captions (0 when nothing is mentioned);
- CHAIR-s = captions with at least one hallucinated mention / all captions.
Both in percent.
"""
from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChairCounts:
    """One caption's mentions: ``hallucinated`` lists the canonical objects not in the ground truth."""

    mentions: int
    hallucinated: tuple[str, ...]

    @property
    def any_hallucinated(self) -> bool:
        return bool(self.hallucinated)


def chair_counts(mentioned: Sequence[str], ground_truth: Collection[str]) -> ChairCounts:
    """Counts for one caption from the canonical objects it mentions (one entry per mention)."""
    return ChairCounts(len(mentioned), tuple(o for o in mentioned if o not in ground_truth))


def chair(counts: Iterable[ChairCounts]) -> dict[str, float]:
    """``{"CHAIR_i", "CHAIR_s"}`` in percent over captions (0.0 for CHAIR-s of no captions)."""
    counts = list(counts)
    mentions = sum(c.mentions for c in counts)
    halluc = sum(len(c.hallucinated) for c in counts)
    return {"CHAIR_i": 100.0 * halluc / mentions if mentions else 0.0,
            "CHAIR_s": 100.0 * sum(c.any_hallucinated for c in counts) / len(counts) if counts else 0.0}
