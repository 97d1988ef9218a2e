"""Seed groups: results of checkpoints that differ only in the training seed, read as one method (no torch).

A result's ``seed_group`` (a ``sparc:`` checkpoint card's ``method``, or ``sparc-eval run --seed-group``)
names the method it is one seed of. Per task and metric a group gives the mean ± sd over its seeds
(``metrics.controls.seed_summary``), and two groups a *method difference* B - A with two intervals:

- **two-way bootstrap**: each replicate draws one multinomial weighting of the images, applied alike to
  every seed of both methods (the images are shared), and draws each method's seeds with replacement;
  the statistic is the mean over the drawn seeds of B minus that of A (as
  ``metrics.controls.two_way_bootstrap``, for any aggregation kind the results store: it recomputes
  each seed's metric from its per-sample records). It needs per-sample records of one dataset.
- **t-interval** over the seed-level differences (seed k of A paired with seed k of B, in model-name
  order; df = seeds - 1), when both methods have the same number (>= 2) of seeds.

With fewer than ``FEW_SEEDS`` (5) seeds per method the bootstrap sees too few seeds to measure their
spread, so the wider of the two is shown, and ``shown`` says which ("t" or "bootstrap"). The p-value is
that of the interval shown (bootstrap: twice the smaller tail; t: the two-sided t-test), ready for a
Holm adjustment over many comparisons (``metrics.controls.holm``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ResultsError
from ..metrics.controls import CONFIDENCE, FEW_SEEDS, bootstrap_p_value, seed_summary, seed_t_interval
from .aggregate import BLOCK, N_BOOTSTRAP, ClusterSums, cluster_of
from .chance import entry_status, no_skill
from .collect import Entry, pick


@dataclass
class GroupStat:
    """One metric of one seed group on one task: the seeds' values (model-name order) and their models."""

    values: list[float]
    models: list[str]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return seed_summary(self.values)[0] if self.values else math.nan

    @property
    def sd(self) -> float:
        return seed_summary(self.values)[1] if self.values else math.nan


def group_stat(entries: Sequence[Entry], metric: str) -> GroupStat:
    ordered = sorted(entries, key=lambda e: e.model)
    return GroupStat([e.value(metric) for e in ordered], [e.model for e in ordered])


def seed_groups(entries: Iterable[Entry]) -> dict[str, dict[str, list[Entry]]]:
    """``{group: {task: [entries, one per model, model-name order]}}`` of the full, measured results
    that name a seed group (one result per model and task, as ``collect.pick`` keeps)."""
    kept, _ = pick(e for e in entries if not e.partial and not e.imported and e.seed_group)
    out: dict[str, dict[str, list[Entry]]] = {}
    for (_, task), e in sorted(kept.items()):
        out.setdefault(e.seed_group, {}).setdefault(task, []).append(e)
    return out


def group_no_skill(entries: Sequence[Entry], metric: str) -> bool:
    """Every seed of the group is at or below chance on ``metric`` (so the method shows no skill there)."""
    states = [entry_status(e, metric) for e in entries]
    return bool(states) and all(no_skill(s) for s in states)


@dataclass
class MethodDifference:
    """B - A over seeds for one metric: point (mean of B's seeds minus mean of A's), the intervals, which
    is shown, its p-value, and the images the bootstrap resampled."""

    metric: str
    a: GroupStat
    b: GroupStat
    diff: float
    bootstrap: tuple[float, float] | None = None
    t: tuple[float, float] | None = None
    shown: str = "none"
    p_value: float = math.nan
    n_clusters: int = 0
    note: str = ""

    @property
    def interval(self) -> tuple[float, float] | None:
        return self.t if self.shown == "t" else self.bootstrap if self.shown == "bootstrap" else None

    @property
    def has_noise(self) -> bool:
        return self.interval is not None

    @property
    def method(self) -> str:
        return {"t": f"t over {self.a.n} seed pairs (df {self.a.n - 1})",
                "bootstrap": f"two-way bootstrap (images x seeds {self.a.n}+{self.b.n})",
                "none": "none"}[self.shown]


def _closure(aggregations: Mapping[str, Mapping], metric: str) -> dict[str, dict]:
    """The aggregation of ``metric`` and those it is built from (``mean_of``)."""
    out: dict[str, dict] = {}
    todo = [metric]
    while todo:
        key = todo.pop()
        spec = aggregations.get(key)
        if spec is None:
            raise KeyError(key)
        out[key] = dict(spec)
        if spec.get("kind") == "mean_of":
            todo += [m for m in spec["metrics"] if m not in out]
    return out


def two_way_bootstrap(a: Sequence[Entry], b: Sequence[Entry], metric: str, seed: int = 0,
                      n_boot: int = N_BOOTSTRAP) -> tuple[np.ndarray, int]:
    """Bootstrap samples [n_boot] of B - A (see the module docstring) and the number of images, from the
    results' per-sample records; ``ResultsError`` when they cannot be paired (other datasets, no records,
    no aggregation of ``metric``)."""
    every = [*a, *b]
    if len({e.fingerprint for e in every}) != 1:
        raise ResultsError("the seeds were evaluated on different datasets")
    try:
        aggs = _closure(every[0].aggregations, metric)
    except KeyError:
        raise ResultsError(f"metric {metric!r} has no aggregation to recompute it from per-sample records") from None
    records = [e.records() for e in every]
    if not all(records):
        raise ResultsError("a result has no per-sample records")
    present = [set(map(cluster_of, r)) for r in records]
    shared = [c for c in dict.fromkeys(map(cluster_of, records[0])) if all(c in p for p in present[1:])]
    if not shared:
        raise ResultsError("the seeds share no image")
    sums = [ClusterSums(r, aggs, shared) for r in records]
    n = len(shared)
    rng = np.random.default_rng(seed)
    per_seed = np.empty((n_boot, len(every)))
    p = np.full(n, 1.0 / n)
    for start in range(0, n_boot, BLOCK):
        w = rng.multinomial(n, p, size=min(BLOCK, n_boot - start)).astype(np.float64)
        for s, sm in enumerate(sums):
            per_seed[start:start + len(w), s] = sm.compute(w)[metric]
    ma, mb = per_seed[:, :len(a)], per_seed[:, len(a):]
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    rows = np.arange(n_boot)[:, None]
    with np.errstate(invalid="ignore"):
        return np.nanmean(mb[rows, ib], axis=1) - np.nanmean(ma[rows, ia], axis=1), n


def _t_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy import stats

    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    sd = d.std(ddof=1)
    if sd == 0:
        return 0.0 if d.mean() != 0 else 1.0
    return float(2 * stats.t.sf(abs(d.mean()) / (sd / math.sqrt(d.size)), d.size - 1))


def method_difference(a: Sequence[Entry], b: Sequence[Entry], metric: str, seed: int = 0,
                      n_boot: int = N_BOOTSTRAP) -> MethodDifference:
    """B - A of two seed groups' results on one task (see the module docstring)."""
    sa, sb = group_stat(a, metric), group_stat(b, metric)
    out = MethodDifference(metric, sa, sb, sb.mean - sa.mean)
    notes = []
    try:
        samples, out.n_clusters = two_way_bootstrap(sorted(a, key=lambda e: e.model), sorted(b, key=lambda e: e.model),
                                                    metric, seed, n_boot)
        ok = samples[~np.isnan(samples)]
        if ok.size:
            lo, hi = np.quantile(ok, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
            out.bootstrap = (float(lo), float(hi))
            boot_p = bootstrap_p_value(ok)
    except ResultsError as e:
        notes.append(f"no bootstrap: {e}")
    if sa.n == sb.n >= 2 and not any(math.isnan(v) for v in sa.values + sb.values):
        out.t = seed_t_interval(sa.values, sb.values)[1]
    if out.bootstrap is not None and out.t is not None:
        few = min(sa.n, sb.n) < FEW_SEEDS
        out.shown = "t" if few and out.t[1] - out.t[0] > out.bootstrap[1] - out.bootstrap[0] else "bootstrap"
    elif out.bootstrap is not None or out.t is not None:
        out.shown = "bootstrap" if out.bootstrap is not None else "t"
    if out.shown == "bootstrap":
        out.p_value = boot_p
    elif out.shown == "t":
        out.p_value = _t_p_value(sa.values, sb.values)
    if sa.n != sb.n or sa.n < 2:
        notes.append(f"no t-interval: {sa.n} and {sb.n} seeds (it needs the same number, at least 2)")
    out.note = "; ".join(notes)
    return out
