"""K-Precision (Adlakha et al., TACL 2024, arXiv 2307.16877): how much of a caption is supported by
reference text, on already tokenised input (see ``sparc_eval.text.normalize``).

K-Precision(response, knowledge) = |multiset intersection of response and knowledge tokens| /
|response tokens|, and 0 for an empty response (as ``KPrecision`` in ``McGill-NLP/instruct-qa``).
Against several references an image scores either the **max** over its references (the default;
each reference is one knowledge string) or against their **union** (all references joined into one
knowledge string, as instruct-qa joins evidence passages: token counts add up).
Values are fractions in [0, 1]; tasks report means in percent.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

REFERENCE_MODES = ("max", "union")


def k_precision(response: Sequence[str], knowledge: Sequence[str]) -> float:
    """Fraction of ``response`` tokens found in ``knowledge`` (counts clipped); 0.0 if ``response`` is empty."""
    if not response:
        return 0.0
    common = Counter(response) & Counter(knowledge)
    return sum(common.values()) / len(response)


def k_precision_refs(response: Sequence[str], references: Sequence[Sequence[str]], mode: str = "max") -> float:
    """K-Precision of ``response`` against several tokenised references: ``max`` over them or their ``union``."""
    if mode not in REFERENCE_MODES:
        raise ValueError(f"mode {mode!r}: expected one of {REFERENCE_MODES}")
    if not references:
        raise ValueError("k_precision_refs needs at least one reference")
    if mode == "union":
        return k_precision(response, [t for ref in references for t in ref])
    return max(k_precision(response, ref) for ref in references)


def chance_k_precision(responses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
                       mode: str = "max", block: int = 512) -> np.ndarray:
    """Expected K-Precision of each image when its caption is drawn uniformly from ``responses`` [N].

    ``references[i]`` are image i's tokenised references. Exact and vectorised: the clipped overlap
    is sum_k [count_response >= k][count_reference >= k] over k >= 1, a sparse product per k,
    computed for ``block`` responses at a time (memory ``block x total references``).
    """
    from scipy import sparse

    if mode not in REFERENCE_MODES:
        raise ValueError(f"mode {mode!r}: expected one of {REFERENCE_MODES}")
    if mode == "union":
        references = [[[t for ref in refs for t in ref]] for refs in references]
    vocab: dict[str, int] = {}

    def counts(seqs: Sequence[Sequence[str]]):
        rows, cols, vals = [], [], []
        for i, seq in enumerate(seqs):
            for tok, c in Counter(seq).items():
                rows.append(i)
                cols.append(vocab.setdefault(tok, len(vocab)))
                vals.append(c)
        return rows, cols, vals

    resp = counts(responses)
    flat_refs = [ref for refs in references for ref in refs]
    ref = counts(flat_refs)
    shape_v = len(vocab)
    c_mat = sparse.csr_matrix((resp[2], (resp[0], resp[1])), shape=(len(responses), shape_v), dtype=np.float32)
    r_mat = sparse.csr_matrix((ref[2], (ref[0], ref[1])), shape=(len(flat_refs), shape_v), dtype=np.float32)
    k_max = int(min(c_mat.max() if c_mat.nnz else 0, r_mat.max() if r_mat.nnz else 0))
    r_levels = [(r_mat >= k).astype(np.float32).T.tocsr() for k in range(1, k_max + 1)]
    lengths = np.asarray([len(r) for r in responses], dtype=np.float64)
    starts = np.cumsum([0] + [len(refs) for refs in references[:-1]])
    total = np.zeros(len(references), dtype=np.float64)
    for a in range(0, len(responses), block):
        b = min(a + block, len(responses))
        inter = np.zeros((b - a, len(flat_refs)), dtype=np.float64)
        for k, r_k in enumerate(r_levels, start=1):
            inter += ((c_mat[a:b] >= k).astype(np.float32) @ r_k).toarray()
        with np.errstate(invalid="ignore", divide="ignore"):
            kp = np.where(lengths[a:b, None] > 0, inter / np.maximum(lengths[a:b, None], 1), 0.0)
        total += np.maximum.reduceat(kp, starts, axis=1).sum(0)
    return total / max(len(responses), 1)
