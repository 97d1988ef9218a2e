"""Results prove what they claim: every reader (leaderboard, check, compare, baseline save) re-derives a
result from its samples before using it.

A measured result that names a samples file must have that file, with the sha256 and record count the
result stores (schema v2), and every metric that has an aggregation must equal the value its records
give (to float tolerance). Corpus-level metrics without an aggregation (BLEU, METEOR) are covered by
the sum and count alone. Every metric must be a finite number. Imported results (other tools' files,
no samples) are exempt. Failures raise ``IntegrityError`` naming the file and the metric.

Threat model: corruption, truncation and careless edits, not a forger who rewrites a file and its sum.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import IntegrityError
from ..fileio import sha256_bytes
from .aggregate import ClusterSums
from .schema import ResultRecord
from .store import check_finite

REL_TOL = ABS_TOL = 1e-9  # recomputation agrees to ~1e-13 on every shipped task


def verified_samples(path: Path | str, record: ResultRecord) -> list[dict]:
    """The per-sample records of the result at ``path``, after checking the result against them."""
    check_finite(record, path)
    if record.imported or not record.samples:
        return []
    sp = record.samples_file(path)
    try:
        data = sp.read_bytes()
    except OSError as e:
        raise IntegrityError(f"{path}: its samples file {sp.name} cannot be read ({e.strerror}); the result "
                             f"cannot be checked (re-run the evaluation with --overwrite)") from None
    if record.samples_sha256 is not None and sha256_bytes(data) != record.samples_sha256:
        raise IntegrityError(f"{sp}: sha256 {sha256_bytes(data)[:12]}… differs from the {record.samples_sha256[:12]}… "
                             f"that {Path(path).name} stores: the samples were changed, truncated or extended "
                             f"after the result was written")
    records = _parse(sp, data)
    if record.samples_count is not None and len(records) != record.samples_count:
        raise IntegrityError(f"{sp}: {len(records)} records, but {Path(path).name} stores {record.samples_count}")
    _check_metrics(path, record, records)
    return records


def _parse(sp: Path, data: bytes) -> list[dict]:
    records = []
    for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise IntegrityError(f"{sp}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(records[-1], dict):
                raise IntegrityError(f"{sp}:{lineno}: expected a JSON object per line")
    return records


def _check_metrics(path: Path | str, record: ResultRecord, records: list[dict]) -> None:
    aggs = {k: v for k, v in record.aggregations.items() if k in record.metrics}
    if not aggs:
        return
    if not records:
        raise IntegrityError(f"{path}: metrics {sorted(aggs)} follow from per-sample records, but its samples "
                             f"file holds none")
    try:
        recomputed = ClusterSums(records, aggs).compute()
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(f"{path}: its samples do not give its metrics ({type(e).__name__}: {e})") from None
    for key, values in recomputed.items():
        stored, derived = float(record.metrics[key]), float(values[0])
        if not math.isclose(stored, derived, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            raise IntegrityError(f"{path}: metric {key!r} is {stored!r}, but its samples give {derived!r}: the "
                                 f"result and its samples disagree (edited or mixed files)")
