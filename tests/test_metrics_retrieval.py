"""Recall@k: hand-computed cases, a brute-force reference (protocols.md §5), ties, chunking."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sparc_eval.metrics.retrieval import chance_recall, hit_probability, recall_at_k, retrieval_counts


def brute_force(img: np.ndarray, txt: np.ndarray, text_image: np.ndarray, ks) -> dict[str, float]:
    """Reference definition: full score matrix, sort, rank of the first correct item (no ties)."""
    s = txt @ img.T  # [M, N]
    out = {}
    for k in ks:
        t2i = [int(text_image[j] in np.argsort(-s[j], kind="stable")[:k]) for j in range(len(txt))]
        i2t = []
        for i in range(len(img)):
            top = np.argsort(-s[:, i], kind="stable")[:k]
            i2t.append(int(any(text_image[t] == i for t in top)))
        out[f"i2t_R@{k}"] = 100 * float(np.mean(i2t))
        out[f"t2i_R@{k}"] = 100 * float(np.mean(t2i))
        out[f"mean_R@{k}"] = (out[f"i2t_R@{k}"] + out[f"t2i_R@{k}"]) / 2
    return out


def tie_enumeration(scores: list[float], positive: list[bool], k: int) -> float:
    """Exact P(a positive in the top k) by enumerating every order of tied items (small cases only)."""
    items = sorted(range(len(scores)), key=lambda i: -scores[i])
    groups = [list(g) for _, g in itertools.groupby(items, key=lambda i: scores[i])]
    orders = list(itertools.product(*[list(itertools.permutations(g)) for g in groups]))
    hits = 0
    for order in orders:
        flat = [i for g in order for i in g]
        hits += any(positive[i] for i in flat[:k])
    return hits / len(orders)


def _normed(x):
    return torch.nn.functional.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1)


def test_hand_computed_two_images():
    # image 0 has captions 0,1; image 1 has caption 2.
    img = _normed([[1.0, 0.0], [0.0, 1.0]])
    txt = _normed([[0.0, 1.0], [1.0, 0.2], [0.0, 1.0]])
    m = recall_at_k(retrieval_counts(img, txt, [0, 0, 1]), [1, 2])
    # i2t: image 0 ranks caption 1 first (its own) -> hit; image 1: captions 0 and 2 tie at the top
    # (caption 0 is not its own) -> hit@1 with probability 1/2, hit@2 certain.
    assert m["i2t_R@1"] == pytest.approx(100 * (1 + 0.5) / 2)
    assert m["i2t_R@2"] == pytest.approx(100.0)
    # t2i: caption 0 (of image 0) prefers image 1 -> miss@1, hit@2; caption 1 -> hit; caption 2 -> hit.
    assert m["t2i_R@1"] == pytest.approx(100 * 2 / 3)
    assert m["t2i_R@2"] == pytest.approx(100.0)
    assert m["mean_R@1"] == pytest.approx((m["i2t_R@1"] + m["t2i_R@1"]) / 2)


def test_k_larger_than_pool_is_certain_hit():
    img = _normed(np.random.default_rng(0).normal(size=(3, 4)))
    txt = _normed(np.random.default_rng(1).normal(size=(4, 4)))
    m = recall_at_k(retrieval_counts(img, txt, [0, 1, 2, 2]), [10])
    assert m["i2t_R@10"] == 100.0 and m["t2i_R@10"] == 100.0


def test_several_captions_any_counts():
    # image 0 has 6 captions; only its 6th is close to it: any caption counts for i2t.
    rng = np.random.default_rng(3)
    img = _normed(rng.normal(size=(4, 8)))
    caps = rng.normal(size=(9, 8))
    caps[5] = img[0].numpy() * 10
    text_image = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3])
    counts = retrieval_counts(img, _normed(caps), text_image)
    assert counts.i2t_gt[0] == 0 and counts.i2t_pos_tied[0] == 1


def test_agrees_with_brute_force_on_random_embeddings():
    rng = np.random.default_rng(7)
    n, caps_per = 57, rng.integers(1, 8, size=57)
    text_image = np.repeat(np.arange(n), caps_per)
    rng.shuffle(text_image)
    img = _normed(rng.normal(size=(n, 16)))
    txt = _normed(rng.normal(size=(len(text_image), 16)) + 0.7 * img[text_image].numpy())
    ks = [1, 5, 10]
    ours = recall_at_k(retrieval_counts(img, txt, text_image, block=8), ks)
    ref = brute_force(img.numpy().astype(np.float64), txt.numpy().astype(np.float64), text_image, ks)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_block_size_does_not_change_counts():
    rng = np.random.default_rng(11)
    text_image = np.repeat(np.arange(40), 5)
    img = _normed(rng.normal(size=(40, 8)))
    txt = _normed(rng.normal(size=(200, 8)))
    a, b = retrieval_counts(img, txt, text_image, block=3), retrieval_counts(img, txt, text_image, block=1000)
    for field in ("i2t_gt", "i2t_eq", "i2t_pos_tied", "t2i_gt", "t2i_eq"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_ties_equal_exhaustive_enumeration(k):
    # Quantised embeddings make exact ties; compare every query with an enumeration of tie orders.
    img = _normed([[1, 0], [1, 0], [0, 1]])  # images 0 and 1 are identical
    txt = _normed([[1, 0], [1, 0], [0, 1], [1, 1], [1, 0]])
    text_image = np.array([0, 1, 2, 2, 1])
    counts = retrieval_counts(img, txt, text_image)
    s = (txt @ img.T).numpy()
    for j in range(len(txt)):
        expected = tie_enumeration(list(s[j]), [i == text_image[j] for i in range(3)], k)
        assert hit_probability(counts.t2i_gt[j:j + 1], counts.t2i_eq[j:j + 1], 1, k)[0] == pytest.approx(expected)
    for i in range(3):
        expected = tie_enumeration(list(s[:, i]), [text_image[t] == i for t in range(len(txt))], k)
        got = hit_probability(counts.i2t_gt[i:i + 1], counts.i2t_eq[i:i + 1], counts.i2t_pos_tied[i:i + 1], k)[0]
        assert got == pytest.approx(expected)


def test_constant_model_scores_exactly_chance():
    caps = np.array([5, 5, 6, 5, 7, 5])
    text_image = np.repeat(np.arange(6), caps)
    img = _normed(np.ones((6, 3)))
    txt = _normed(np.ones((len(text_image), 3)))
    for k in (1, 5):
        m = recall_at_k(retrieval_counts(img, txt, text_image), [k])
        chance = chance_recall(caps, k)
        for key in chance:
            assert m[key] == pytest.approx(chance[key], abs=1e-9)
    # analytic: t2i chance k/N; i2t chance 1 - C(M-m, k)/C(M, k)
    m_total = caps.sum()
    i2t = np.mean([1 - math.comb(m_total - c, 5) / math.comb(m_total, 5) for c in caps])
    assert chance_recall(caps, 5)["i2t_R@5"] == pytest.approx(100 * i2t)
    assert chance_recall(caps, 5)["t2i_R@5"] == pytest.approx(100 * 5 / 6)


def test_image_without_caption_is_an_error():
    with pytest.raises(ValueError, match="no caption"):
        retrieval_counts(_normed(np.eye(3)), _normed(np.eye(3)[:2]), [0, 1])
