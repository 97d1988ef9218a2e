"""Differences between two results of one task, with a noise estimate (no torch).

``differences(a, b, metrics)`` is what ``check`` and ``compare`` both use:

- **paired**: bootstrap over the clusters (images) both sides share, with the same resampling
  weights on both sides (``aggregate.bootstrap_weights``): exact when both have per-sample records
  (or per-cluster sums, as a baseline file stores them) of the same dataset.
- **intervals**: when one side has no per-sample data (or the datasets differ), the two stored 95%
  intervals are combined as independent normal errors: half-width ``sqrt(h_a^2 + h_b^2)``.
- **none**: neither side has per-sample data or intervals: no interval and no p-value (NaN).

``ClusterSums`` keeps per-cluster sums, so a stored copy (``stored_sums``, rebuilt with
``ClusterSums.from_arrays``) reproduces every aggregation kind exactly without the records.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ResultsError
from .aggregate import N_BOOTSTRAP, ClusterSums, cluster_key, cluster_of, paired_bootstrap
from .collect import Entry

Z95 = 1.959963984540054


@dataclass
class Difference:
    """``b - a`` for one metric; ``lo``/``hi`` a 95% interval of it, ``method`` how it was estimated."""

    metric: str
    a: float
    b: float
    diff: float
    lo: float = math.nan
    hi: float = math.nan
    p_value: float = math.nan
    n_clusters: int = 0
    method: str = "none"

    @property
    def has_noise(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    @property
    def significant(self) -> bool:
        """The 95% interval excludes 0 (False without a noise estimate)."""
        return self.has_noise and (self.lo > 0 or self.hi < 0)


def select_metrics(entry: Entry, which: str | Sequence[str]) -> list[str]:
    """The metric keys of ``entry`` that ``which`` names: ``main``; ``all`` (main first, the rest sorted);
    or a list, keeping only the keys ``entry`` reports (a task never had the others)."""
    if which == "main":
        return [entry.main_metric]
    if which == "all":
        return [entry.main_metric] + sorted(k for k in entry.metrics if k != entry.main_metric)
    return [k for k in which if k in entry.metrics]


def sums_to_json(sums: ClusterSums) -> dict:
    """``{"ids": [...], "count": [...], "fields": {field: {"sum": [...], "count"?: [...]}}, "groups"?: {...}}``.

    Integral numbers are written as integers; a field's ``count`` (records per cluster that have the
    field) is left out when it equals the shared top-level ``count``.
    """
    def plain(a: np.ndarray) -> list:
        return [int(x) if float(x).is_integer() else float(x) for x in a] if a.ndim == 1 else [plain(r) for r in a]

    counts = {f: [int(x) for x in c] for f, c in sums.counts.items()}
    shared = max(counts.values(), key=list(counts.values()).count) if counts else []
    fields = {f: {"sum": plain(sums.sums[f]), **({} if counts[f] == shared else {"count": counts[f]})} for f in sums.sums}
    out = {"ids": [list(c) if isinstance(c, tuple) else c for c in sums.clusters], "count": shared, "fields": fields}
    if sums.grouped:  # group_mean: non-zero (cluster, group) cells
        out["grouped"] = []
        for (field, group), (s, c) in sums.grouped.items():
            s, c = s.tocoo(), c.tocsr()
            out["grouped"].append({"field": field, "group": group, "rows": s.row.tolist(), "cols": s.col.tolist(),
                                   "sum": plain(s.data), "count": plain(np.asarray(c[s.row, s.col]).ravel())})
    return out


def stored_sums(data: Mapping, aggregations: Mapping[str, Mapping], where: str) -> ClusterSums:
    """Inverse of ``sums_to_json``; ``ResultsError`` naming ``where`` when shapes disagree."""
    try:
        ids = [cluster_key(c) for c in data["ids"]]
        sums, counts = {}, {}
        for f, arrays in data["fields"].items():
            sums[f] = np.asarray(arrays["sum"], dtype=np.float64)
            counts[f] = np.asarray(arrays.get("count", data.get("count")), dtype=np.float64)
            if len(sums[f]) != len(ids) or len(counts[f]) != len(ids):
                raise ValueError(f"field {f!r} has {len(sums[f])} sums and {len(counts[f])} counts for {len(ids)} clusters")
        grouped = _grouped_from_json(data.get("grouped", []), len(ids))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ResultsError(f"{where}: per-cluster sums are malformed ({type(e).__name__}: {e}); expected "
                           f"{{'ids': [...], 'count': [...], 'fields': {{field: {{'sum': [...]}}}}, "
                           f"'grouped': [{{'field', 'group', 'rows', 'cols', 'sum', 'count'}}]}}") from None
    return ClusterSums.from_arrays(aggregations, ids, sums, counts, grouped)


def _grouped_from_json(items: Sequence[Mapping], n_clusters: int) -> dict:
    """``sums_to_json``'s ``grouped`` list -> {(field, group): (sparse sums, sparse counts)}; ``ValueError``
    when the lists disagree in length or a cell lies outside the clusters."""
    from scipy import sparse

    if not isinstance(items, list):
        raise ValueError(f"'grouped' is a {type(items).__name__}, not a list")
    out = {}
    for g in items:
        rows, cols = np.asarray(g["rows"], dtype=np.int64), np.asarray(g["cols"], dtype=np.int64)
        values, counts = np.asarray(g["sum"], dtype=np.float64), np.asarray(g["count"], dtype=np.float64)
        if not rows.ndim == cols.ndim == values.ndim == counts.ndim == 1 or \
                not len(rows) == len(cols) == len(values) == len(counts):
            raise ValueError(f"grouped {g['field']!r}/{g['group']!r}: rows, cols, sum and count differ in length")
        if rows.size and (rows.min() < 0 or rows.max() >= n_clusters or cols.min() < 0):
            raise ValueError(f"grouped {g['field']!r}/{g['group']!r}: a cell lies outside the {n_clusters} clusters")
        shape = (n_clusters, int(cols.max(initial=-1)) + 1)
        out[(str(g["field"]), str(g["group"]))] = (sparse.csr_matrix((values, (rows, cols)), shape=shape),
                                                   sparse.csr_matrix((counts, (rows, cols)), shape=shape))
    return out


def restrict(sums: ClusterSums, clusters: Sequence, aggregations: Mapping[str, Mapping]) -> ClusterSums:
    """The same sums over ``clusters`` (a subset, in that order) and only ``aggregations``."""
    index = {c: i for i, c in enumerate(sums.clusters)}
    rows = np.asarray([index[c] for c in clusters], dtype=np.int64)
    return ClusterSums.from_arrays(aggregations, clusters, {f: s[rows] for f, s in sums.sums.items()},
                                   {f: c[rows] for f, c in sums.counts.items()},
                                   {k: (s[rows], c[rows]) for k, (s, c) in sums.grouped.items()})


def paired_sums(a: ClusterSums, b: ClusterSums, metrics: Sequence[str], seed: int = 0,
                n: int = N_BOOTSTRAP) -> dict[str, Difference]:
    """``aggregate.paired_bootstrap`` of ``b - a`` as ``Difference``s for ``metrics`` (same clusters, same order)."""
    est = paired_bootstrap(a, b, seed, n)
    return {k: Difference(k, e["a"], e["b"], e["diff"], e["lo"], e["hi"], e["p_value"], e["n_clusters"], "paired")
            for k, e in est.items() if k in metrics}


def paired_shared(a: ClusterSums | Sequence[Mapping], aggs_a: Mapping[str, Mapping], records_b: Sequence[Mapping],
                  aggs_b: Mapping[str, Mapping], metrics: Sequence[str] | None = None, seed: int = 0,
                  n: int = N_BOOTSTRAP) -> dict[str, Difference]:
    """Paired bootstrap of ``b - a`` over the clusters both sides share, in ``a``'s order, for the
    metrics both aggregate (``metrics``: only those). ``a`` is per-sample records or per-cluster sums
    (a baseline file's); {} when nothing is shared."""
    common = {k: v for k, v in aggs_b.items() if k in aggs_a}
    order = a.clusters if isinstance(a, ClusterSums) else dict.fromkeys(cluster_of(r) for r in a)
    have = {cluster_of(r) for r in records_b}
    shared = [c for c in order if c in have]
    if not shared or not common:
        return {}
    specs_a = {k: aggs_a[k] for k in common}
    side_a = restrict(a, shared, specs_a) if isinstance(a, ClusterSums) else ClusterSums(a, specs_a, shared)
    return paired_sums(side_a, ClusterSums(records_b, common, shared), list(common) if metrics is None else metrics,
                       seed, n)


def differences(a: Entry, b: Entry, metrics: Sequence[str], seed: int = 0, sums_a: ClusterSums | None = None,
                warn: Callable[[str], None] | None = None) -> tuple[dict[str, Difference], list[str]]:
    """``b - a`` of two results of one task for each of ``metrics``, and notes on how it was estimated.

    Paired bootstrap when both are on the same dataset (equal fingerprints) and both have per-sample
    data (``sums_a``: ``a``'s stored per-cluster sums, used instead of its records); else from the
    stored intervals (``from_intervals``). Unreadable samples files are reported through ``warn``.
    """
    notes: list[str] = []
    paired: dict[str, Difference] = {}
    if a.fingerprint != b.fingerprint:
        notes.append("datasets differ: unpaired")
    else:
        side_a = sums_a if sums_a is not None else _records(a, warn)
        records_b = _records(b, warn) if side_a and a.aggregations and b.aggregations else []
        if records_b:
            paired = paired_shared(side_a, a.aggregations, records_b, b.aggregations, metrics, seed)
        else:
            notes.append("no per-sample records on both sides: unpaired")
    out = {k: paired.get(k) or from_intervals(k, a.value(k), b.value(k), a.interval(k), b.interval(k))
           for k in metrics}
    return out, notes


def _records(entry: Entry, warn: Callable[[str], None] | None) -> list[dict]:
    try:
        return entry.records()
    except ResultsError as e:
        if warn is not None:
            warn(f"warning: {e}; using the stored intervals instead of a paired bootstrap")
        return []


def from_intervals(metric: str, a: float, b: float, iv_a: Sequence[float] | None,
                   iv_b: Sequence[float] | None) -> Difference:
    """Unpaired ``b - a`` with a normal-approximation interval from the two 95% intervals."""
    diff = b - a
    if iv_a is None or iv_b is None:
        return Difference(metric, a, b, diff)
    half = math.hypot((iv_a[1] - iv_a[0]) / 2, (iv_b[1] - iv_b[0]) / 2)
    if half <= 0:
        return Difference(metric, a, b, diff, diff, diff, 1.0 if diff == 0 else 0.0, 0, "intervals")
    z = abs(diff) / (half / Z95)
    return Difference(metric, a, b, diff, diff - half, diff + half, math.erfc(z / math.sqrt(2)), 0, "intervals")
