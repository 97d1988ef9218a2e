"""Controls that travel with every result: chance levels, text-only probes, retrieval-free faithfulness,
multiple-comparison and seed statistics. Pure functions on arrays; values in percent unless stated.

- ``segmentation_chance``: the chance level of mIoU / mAcc / aAcc (both segmentation protocols) as the
  larger of two label-free predictors that know only the dataset's class frequencies p_c: sampling each
  pixel's class from the prior (expected IoU_c = p_c / (2 - p_c) at dataset level) and always
  predicting the majority class.
- ``faithfulness_chance``: expected K-P / K-Pna / CHAIR of a caption drawn uniformly from the pool.
- ``miss_fields`` / ``MISS_AGGREGATIONS``: K-P, K-Pna and CHAIR over the images whose own reference
  was not retrieved (``*_miss``), so faithfulness reads apart from retrieval.
- ``artifact_accuracy``: how well a text-only classifier (logistic regression on length and word
  features, cross-validated with folds grouped by image) picks the right caption of a probe; a
  category whose interval's lower bound exceeds ``ARTIFACT_FLAG`` is flagged.
- ``blind_scores``: a model's scores of the candidates against the dataset's mean image embedding
  (its own text prior); ``blind_acc`` is the probe's accuracy on them.

Imports numpy only (scipy and scikit-learn where a function needs them), so the results tables may use
the statistics without torch.
- ``holm``, ``bootstrap_p_value``: Holm-Bonferroni adjustment of many significance marks.
- ``seed_summary``, ``two_way_bootstrap``, ``seed_t_interval``, ``method_difference``: method
  comparisons over training seeds (mean ± sd; images and seeds resampled; t over seed differences).
- ``covers``, ``significant``: "at chance" and "significant" as the tables mark them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

ARTIFACT_FLAG = 60.0  # % : a probe category whose artifact_acc lower bound exceeds this is flagged
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
FEW_SEEDS = 5  # below this many seeds per method the t-interval over seed differences is shown


# --- chance levels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chance:
    """Chance levels in percent (``values``) and how each was obtained (``method``)."""

    values: dict[str, float]
    method: dict[str, str]


def _prior_iou(p: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Expected IoU of a class with predicted fraction ``p`` and true fraction ``f`` of the pixels when
    predictions are independent of the truth: I = p f, U = p + f - p f (ratio of expected counts)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(f > 0, p * f / (p + f - p * f), np.nan)


def segmentation_chance(label_area: np.ndarray, protocol: str = "standard", exclude: Sequence[int] = ()) -> Chance:
    """Chance mIoU, mAcc and aAcc (percent) from the ground-truth class areas of every image.

    ``label_area`` [N images, C classes]: valid (not ignored) pixels per class, as the per-image
    records of the segmentation tasks. ``protocol``: ``standard`` (dataset-level sums, mean over
    classes present) or ``sparc-paper`` (per-image mean over the classes present, ``exclude`` left out,
    then the mean over images with such a class). Two predictors that ignore the image are scored:
    *prior sampling* (each pixel's class drawn from the dataset's class frequencies p; standard
    protocol: IoU_c = p_c / (2 - p_c), Acc_c = p_c, aAcc = sum p_c^2) and *majority* (every pixel the
    most frequent class m: IoU_m = p_m, Acc_m = 1, the others 0); each metric's chance is the larger.
    """
    area = np.asarray(label_area, dtype=np.float64)
    if area.ndim != 2:
        raise ValueError(f"label_area must be [images, classes], got shape {area.shape}")
    total = area.sum(0)
    if total.sum() <= 0:
        raise ValueError("label_area holds no valid pixel")
    prior = total / total.sum()
    major = int(np.argmax(prior))
    if protocol == "standard":
        present = total > 0
        k = int(present.sum())
        sampled = {"mIoU": float(np.mean(prior[present] / (2 - prior[present]))),
                   "mAcc": float(np.mean(prior[present])), "aAcc": float(np.sum(prior ** 2))}
        majority = {"mIoU": float(prior[major] / k), "mAcc": 1.0 / k, "aAcc": float(prior[major])}
    elif protocol == "sparc-paper":
        keep = np.ones(area.shape[1], dtype=bool)
        keep[list(exclude)] = False
        pixels = area.sum(1, keepdims=True)
        frac = np.divide(area, pixels, out=np.zeros_like(area), where=pixels > 0)
        present = (area > 0) & keep
        rows = present.any(1)
        if not rows.any():
            raise ValueError("no image has a class present outside `exclude`")
        frac, present = frac[rows], present[rows]
        n_present = present.sum(1)
        iou = np.where(present, _prior_iou(np.broadcast_to(prior, frac.shape), frac), 0.0)
        acc = np.where(present, prior, 0.0)
        sampled = {"mIoU": float(np.mean(iou.sum(1) / n_present)), "mAcc": float(np.mean(acc.sum(1) / n_present)),
                   "aAcc": float(np.sum(prior ** 2))}
        hit = present[:, major]
        majority = {"mIoU": float(np.mean(np.where(hit, frac[:, major], 0.0) / n_present)),
                    "mAcc": float(np.mean(hit / n_present)), "aAcc": float(prior[major])}
    else:
        raise ValueError(f"protocol {protocol!r}: expected 'standard' or 'sparc-paper'")
    values, method = {}, {}
    for key in ("mIoU", "mAcc", "aAcc"):
        best = "prior sampling" if sampled[key] >= majority[key] else "majority class"
        values[key] = 100 * max(sampled[key], majority[key])
        method[key] = (f"{best} (larger of prior sampling {100 * sampled[key]:.2f} and majority class "
                       f"{100 * majority[key]:.2f}; class frequencies of the evaluated ground truth, {protocol})")
    return Chance(values, method)


def faithfulness_chance(kp: np.ndarray | None = None, kpna: np.ndarray | None = None,
                        pool_objects: np.ndarray | None = None, image_objects: np.ndarray | None = None,
                        block: int = 1024) -> Chance:
    """Expected faithfulness metrics (percent) of a caption drawn uniformly from the pool for each image.

    ``kp`` / ``kpna`` [N images]: each image's expected K-Precision over the pool, as
    ``metrics.kprecision.chance_k_precision`` returns (fractions). ``pool_objects`` [M captions, O
    objects]: object mention counts of each pool caption; ``image_objects`` [N, O]: whether the object
    is in the image's ground truth. CHAIR_s chance = the mean over (image, pool caption) pairs of "has a
    hallucinated mention"; CHAIR_i chance = expected hallucinated mentions / expected mentions.
    """
    values, method = {}, {}
    for key, per_image in (("K-P", kp), ("K-Pna", kpna)):
        if per_image is not None:
            values[key] = 100 * float(np.mean(per_image))
            method[key] = "expected value of a caption drawn uniformly from the pool, mean over images"
    if pool_objects is not None and image_objects is not None:
        a = np.asarray(pool_objects, dtype=np.float64)
        absent = 1.0 - np.asarray(image_objects, dtype=np.float64)
        mentions = a.sum() * absent.shape[0]
        halluc = float(a.sum(0) @ absent.sum(0))
        any_h = 0.0
        for s in range(0, a.shape[0], block):
            any_h += float(((a[s:s + block] > 0).astype(np.float64) @ absent.T > 0).sum())
        values["CHAIR_i"] = 100 * halluc / mentions if mentions else 0.0
        values["CHAIR_s"] = 100 * any_h / (a.shape[0] * absent.shape[0])
        method["CHAIR_i"] = "expected hallucinated / expected mentions of a uniformly drawn pool caption"
        method["CHAIR_s"] = "probability that a uniformly drawn pool caption mentions an absent object"
    return Chance(values, method)


# --- faithfulness apart from retrieval -----------------------------------------------------------------

MISS_FIELDS = {"K-P": "kp", "K-Pna": "kpna", "CHAIR_s": "chair_any"}
MISS_AGGREGATIONS = {
    "K-P_miss": {"kind": "ratio", "num": "kp_miss", "den": "miss", "scale": 100},
    "K-Pna_miss": {"kind": "ratio", "num": "kpna_miss", "den": "miss", "scale": 100},
    "CHAIR_i_miss": {"kind": "ratio", "num": "chair_hallucinated_miss", "den": "chair_mentions_miss", "scale": 100},
    "CHAIR_s_miss": {"kind": "ratio", "num": "chair_any_miss", "den": "miss", "scale": 100},
}


def miss_fields(record: Mapping[str, float], own_retrieved: bool) -> dict[str, float]:
    """Extra fields of one faithfulness record (``kp``, ``kpna`` and, with CHAIR, ``chair_any``,
    ``chair_hallucinated``, ``chair_mentions``) that ``MISS_AGGREGATIONS`` turn into the ``*_miss``
    metrics: each value counts only when the retrieved caption is not one of the image's references."""
    miss = 0 if own_retrieved else 1
    out = {"miss": miss}
    for key in ("kp", "kpna", "chair_any", "chair_hallucinated", "chair_mentions"):
        if key in record:
            out[f"{key}_miss"] = record[key] * miss
    return out


def miss_metrics(records: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``K-P_miss``, ``K-Pna_miss``, ``CHAIR_i_miss``, ``CHAIR_s_miss`` (percent) from records carrying
    ``miss_fields``; metrics without the fields they need, or over no missed image, are left out."""
    out = {}
    for key, spec in MISS_AGGREGATIONS.items():
        if not records or spec["num"] not in records[0]:
            continue
        den = sum(r[spec["den"]] for r in records)
        if den > 0:
            out[key] = 100 * sum(r[spec["num"]] for r in records) / den
    return out


# --- text-only controls of caption-selection probes ----------------------------------------------------


@dataclass(frozen=True)
class ArtifactResult:
    """Text-only accuracy (percent) of one probe category, its bootstrap interval and whether it is flagged."""

    acc: float
    interval: tuple[float, float]
    n: int
    flagged: bool


def _text_features(texts: Sequence[str]):
    """Length in words and characters plus word unigram and bigram counts of each text (sparse rows)."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    words = CountVectorizer(ngram_range=(1, 2), token_pattern=r"[^\s,.:;]+", lowercase=True).fit_transform(texts)
    lengths = np.array([[len(t.split()), len(t) / 5.0] for t in texts], dtype=np.float64)
    return sparse.hstack([sparse.csr_matrix(lengths), words]).tocsr()


def _group_bootstrap(scores: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval (percent) of the mean of ``scores`` with whole groups resampled."""
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=scores, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    lo, hi = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return 100 * float(lo), 100 * float(hi)


def artifact_accuracy(options: Sequence[Sequence[str]], correct: Sequence[int], groups: Sequence[str],
                      categories: Sequence[str] | None = None, folds: int = 5, seed: int = 0,
                      n_boot: int = N_BOOTSTRAP, flag_above: float = ARTIFACT_FLAG) -> dict[str, ArtifactResult]:
    """Per category: how often a text-only classifier picks each item's right option (``artifact_acc``).

    Each item has ``options`` (texts) of which ``correct`` is right, and a ``groups`` key (its image).
    A logistic regression scores a text from its length (words, characters) and word unigram and bigram
    counts; it is fit on differences "right option - wrong option" (both signs) of the training folds
    and picks the highest-scoring option of each held-out item. Folds are grouped by image
    (``GroupKFold``), fitted per category. An item scores 1 when its right option is strictly best,
    1/k when it ties with k - 1 others at the top (chance: 50 for pairs). The interval is a percentile
    bootstrap over images; a category is flagged when its lower bound exceeds ``flag_above``.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    n = len(options)
    if not (len(correct) == len(groups) == n) or (categories is not None and len(categories) != n):
        raise ValueError("options, correct, groups and categories must have one entry per item")
    cats = np.asarray(categories if categories is not None else ["all"] * n, dtype=object)
    groups_arr = np.asarray([str(g) for g in groups], dtype=object)
    out: dict[str, ArtifactResult] = {}
    for cat in dict.fromkeys(cats.tolist()):
        idx = np.flatnonzero(cats == cat)
        texts = [t for i in idx for t in options[i]]
        feats = _text_features(texts)
        starts = np.cumsum([0] + [len(options[i]) for i in idx])
        rows_right, rows_wrong, item_of = [], [], []
        for j, i in enumerate(idx):
            right = starts[j] + int(correct[i])
            for k in range(starts[j], starts[j + 1]):
                if k != right:
                    rows_right.append(right)
                    rows_wrong.append(k)
                    item_of.append(j)
        diff = feats[rows_right] - feats[rows_wrong]
        item_of = np.asarray(item_of)
        scores = np.full(len(idx), 0.5)
        n_groups = len(set(groups_arr[idx]))
        if n_groups >= 2:
            splitter = GroupKFold(n_splits=min(folds, n_groups))
            for train, test in splitter.split(np.zeros(len(idx)), groups=groups_arr[idx]):
                pairs = np.flatnonzero(np.isin(item_of, train))
                x = diff[pairs]
                model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=2000)
                model.fit(sparse.vstack([x, -x]), np.r_[np.ones(x.shape[0]), np.zeros(x.shape[0])])
                text_score = feats @ model.coef_.ravel()
                for j in test:
                    s = text_score[starts[j]:starts[j + 1]]
                    right = s[int(correct[idx[j]])]
                    above = int(np.sum(s > right))
                    ties = int(np.sum(s == right))  # includes the right option itself
                    scores[j] = 0.0 if above else 1.0 / ties
        lo, hi = _group_bootstrap(scores, groups_arr[idx], n_boot, seed)
        out[str(cat)] = ArtifactResult(100 * float(scores.mean()), (lo, hi), len(idx), lo > flag_above)
    return out


def blind_scores(text_embeddings: np.ndarray, option_index: np.ndarray, image_embeddings: np.ndarray) -> np.ndarray:
    """[N, K] scores of each item's options (``option_index`` [N, K] rows of ``text_embeddings`` [M, D], -1
    pads, giving NaN) against the normalised mean of ``image_embeddings`` [I, D]: the probe answered by the
    model's text prior alone. ``metrics.compositional.selection_correct`` on them gives ``blind_acc``.
    Arrays (or CPU tensors) of floats; computed in float64."""
    mean_image = np.asarray(image_embeddings, dtype=np.float64).mean(0)
    mean_image = mean_image / max(float(np.linalg.norm(mean_image)), 1e-12)
    per_text = np.asarray(text_embeddings, dtype=np.float64) @ mean_image
    idx = np.asarray(option_index, dtype=np.int64)
    return np.where(idx >= 0, per_text[np.clip(idx, 0, None)], np.nan)


# --- significance across many comparisons -------------------------------------------------------------


def bootstrap_p_value(samples: np.ndarray, null: float = 0.0) -> float:
    """Two-sided bootstrap p-value of "the difference is ``null``": twice the smaller tail mass, at most 1."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return 1.0
    tail = min(np.mean(s <= null), np.mean(s >= null))
    return float(min(1.0, 2 * tail))


def holm(p_values: Mapping[str, float] | Sequence[float]) -> dict | list:
    """Holm-Bonferroni adjusted p-values (same keys or order): the k-th smallest of m is multiplied by
    m - k + 1 and made non-decreasing; a comparison is significant at level a when its adjusted p <= a."""
    keys = list(p_values) if isinstance(p_values, Mapping) else None
    p = np.asarray([p_values[k] for k in keys] if keys is not None else list(p_values), dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return dict(zip(keys, adjusted.tolist())) if keys is not None else adjusted.tolist()


def covers(interval: Sequence[float] | None, value: float | None) -> bool:
    """Whether ``interval`` [lo, hi] holds ``value`` ("at chance" when ``value`` is the chance level)."""
    if interval is None or value is None:
        return False
    return float(interval[0]) <= float(value) <= float(interval[1])


def significant(difference_interval: Sequence[float], a_at_chance: bool = False, b_at_chance: bool = False) -> bool:
    """A difference is significant when its interval excludes 0, unless both sides are at chance."""
    if a_at_chance and b_at_chance:
        return False
    return not covers(difference_interval, 0.0)


# --- training seeds -------------------------------------------------------------------------------------


def seed_summary(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) over seeds; sd is 0.0 for one seed."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _per_seed_metric(weights: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """[B, S] metric of every seed under every image weighting: nanmean over classes of sum w num / sum w den."""
    n = np.einsum("bn,snc->bsc", weights, num)
    d = np.einsum("bn,snc->bsc", weights, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(d > 0, n / np.where(d > 0, d, 1), np.nan)
    return np.nanmean(r, axis=2) if r.shape[2] > 1 else r[:, :, 0]


def _as_3d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[:, :, None] if x.ndim == 2 else x


@dataclass
class BootstrapDifference:
    """B - A: point estimate (mean over seeds of B minus that of A), percentile interval, resamples."""

    point: float
    interval: tuple[float, float]
    samples: np.ndarray = field(repr=False)


def two_way_bootstrap(a_num: np.ndarray, b_num: np.ndarray, a_den: np.ndarray | None = None,
                      b_den: np.ndarray | None = None, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                      scale: float = 100.0) -> BootstrapDifference:
    """Interval of a method difference (B - A) that resamples images and training seeds.

    ``*_num`` / ``*_den`` are per-image record fields of each seed's result, [S, N] or [S, N, C] (C
    classes, as mIoU's per-class areas); a seed's metric is sum(w num) / sum(w den) (a mean when the
    denominator is omitted: ones), its nanmean over classes when C > 1, times ``scale``. Each resample
    draws one multinomial weighting of the N images, applied alike to every seed of both methods (the
    images are shared), and draws each method's seeds with replacement; the statistic is the mean over
    the drawn seeds of B minus that of A.
    """
    an, bn = _as_3d(a_num), _as_3d(b_num)
    ad = _as_3d(a_den) if a_den is not None else np.ones_like(an)
    bd = _as_3d(b_den) if b_den is not None else np.ones_like(bn)
    if an.shape[1] != bn.shape[1]:
        raise ValueError(f"both methods must be scored on the same images: {an.shape[1]} vs {bn.shape[1]}")
    rng = np.random.default_rng(seed)
    n_img = an.shape[1]
    weights = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot).astype(np.float64)
    ma = _per_seed_metric(weights, an, ad) * scale
    mb = _per_seed_metric(weights, bn, bd) * scale
    ia = rng.integers(0, ma.shape[1], size=(n_boot, ma.shape[1]))
    ib = rng.integers(0, mb.shape[1], size=(n_boot, mb.shape[1]))
    rows = np.arange(n_boot)[:, None]
    diff = np.nanmean(mb[rows, ib], axis=1) - np.nanmean(ma[rows, ia], axis=1)
    full = np.ones((1, n_img))
    point = float(np.mean(_per_seed_metric(full, bn, bd)) - np.mean(_per_seed_metric(full, an, ad))) * scale
    lo, hi = np.nanquantile(diff, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return BootstrapDifference(point, (float(lo), float(hi)), diff)


def seed_t_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """Mean of the seed-level differences b_s - a_s (seed s of both methods paired) and its t-interval,
    df = seeds - 1; needs at least two seeds per method."""
    from scipy import stats

    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape or a_arr.size < 2:
        raise ValueError(f"seed_t_interval needs the same number (>= 2) of seeds per method, got {a_arr.size} "
                         f"and {b_arr.size}")
    d = b_arr - a_arr
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return float(d.mean()), (float(d.mean() - half), float(d.mean() + half))


@dataclass
class MethodDifference:
    """A method difference over seeds: bootstrap and (with >= 2 paired seeds) t intervals, and which is shown."""

    point: float
    bootstrap: tuple[float, float]
    t: tuple[float, float] | None
    shown: str
    seeds: tuple[int, int]

    @property
    def interval(self) -> tuple[float, float]:
        return self.t if self.shown == "t" and self.t is not None else self.bootstrap


def method_difference(a_num: np.ndarray, b_num: np.ndarray, a_den: np.ndarray | None = None,
                      b_den: np.ndarray | None = None, n_boot: int = N_BOOTSTRAP, seed: int = 0,
                      scale: float = 100.0) -> MethodDifference:
    """``two_way_bootstrap`` and, when both methods have the same number of seeds, ``seed_t_interval`` of
    the seed-level metrics. With fewer than ``FEW_SEEDS`` seeds the bootstrap sees too few seeds to
    measure their variance, so the wider of the two intervals is shown (``shown``: "t" or "bootstrap")."""
    boot = two_way_bootstrap(a_num, b_num, a_den, b_den, n_boot, seed, scale)
    an, bn = _as_3d(a_num), _as_3d(b_num)
    ad = _as_3d(a_den) if a_den is not None else np.ones_like(an)
    bd = _as_3d(b_den) if b_den is not None else np.ones_like(bn)
    full = np.ones((1, an.shape[1]))
    a_seed = _per_seed_metric(full, an, ad)[0] * scale
    b_seed = _per_seed_metric(full, bn, bd)[0] * scale
    t = seed_t_interval(a_seed, b_seed)[1] if a_seed.size == b_seed.size >= 2 else None
    shown = "bootstrap"
    if t is not None and min(a_seed.size, b_seed.size) < FEW_SEEDS and (t[1] - t[0]) > (boot.interval[1] - boot.interval[0]):
        shown = "t"
    return MethodDifference(boot.point, boot.interval, t, shown, (int(a_seed.size), int(b_seed.size)))
