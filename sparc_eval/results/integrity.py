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

from ..errors import IntegrityError, ResultsError
from ..fileio import sha256_bytes
from .aggregate import ClusterSums
from .schema import SCHEMA, ResultRecord
from .store import check_finite

REL_TOL = ABS_TOL = 1e-9  # recomputation agrees to ~1e-13 on every shipped task


def verified_samples(path: Path | str, record: ResultRecord) -> list[dict]:
    """The per-sample records of the result at ``path``, after checking the result against them."""
    check_finite(record, path)
    _check_fields(path, record)
    if record.imported or not record.samples:
        return []
    sp = record.samples_file(path)
    if sp.exists() and not sp.is_file():  # a folder, or a FIFO or device that would block or never end
        raise IntegrityError(f"{path}: its samples file {sp.name} is not a regular file; the result cannot be "
                             f"checked (re-run the evaluation with --overwrite)")
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


def _check_fields(path: Path | str, record: ResultRecord) -> None:
    """The fields that say how to check a result are themselves sound: ``samples`` a file name beside the
    JSON, its sum and count of the right types and never without it, aggregation specs objects, and (v2,
    the current writer) every metric with a bootstrap interval backed by an aggregation and a samples file
    (intervals come only from per-sample records through an aggregation; controls excepted)."""
    sums = {k: getattr(record, k) for k in ("samples_sha256", "samples_count") if getattr(record, k) is not None}
    if record.imported:
        if record.samples or sums:
            raise IntegrityError(f"{path}: kind 'imported' but it names per-sample records (samples/samples_sha256); "
                                 f"imported results never have them: the file was edited")
        return
    name = record.samples
    if name is not None and (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name):
        raise IntegrityError(f"{path}: field 'samples' is {name!r}; expected the file name of its samples file "
                             f"beside the JSON (<task>.samples.jsonl), not a path")
    if not name and sums:
        raise IntegrityError(f"{path}: stores {' and '.join(sums)} but field 'samples' naming the samples file is "
                             f"missing; the result cannot be checked (edited file)")
    sha, count = record.samples_sha256, record.samples_count
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise IntegrityError(f"{path}: field 'samples_sha256' is {sha!r:.80}; expected a sha256 hex digest")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise IntegrityError(f"{path}: field 'samples_count' is {count!r:.80}; expected a number of records")
    aggs = record.aggregations
    if not isinstance(aggs, dict) or not all(isinstance(v, dict) for v in aggs.values()):
        bad = next((k for k, v in aggs.items() if not isinstance(v, dict)), None) if isinstance(aggs, dict) else None
        where = f"aggregations[{bad!r}]" if bad is not None else "aggregations"
        raise IntegrityError(f"{path}: field {where} is malformed; expected an object per metric (how it is "
                             f"recomputed from the samples)")
    if record.schema != SCHEMA:
        return  # v1 files (and hand-written fixtures) may carry intervals without samples
    intervals = record.intervals if isinstance(record.intervals, dict) else {}
    with_interval = [k for k in intervals if k in record.metrics]
    if with_interval and not name:
        raise IntegrityError(f"{path}: metrics {with_interval[:3]} have bootstrap intervals, which come from "
                             f"per-sample records, but the result names no samples file (edited file)")
    unbacked = [k for k in with_interval if k not in aggs and not _is_control(k)]
    if unbacked:
        raise IntegrityError(f"{path}: metric {unbacked[0]!r} has a bootstrap interval but no aggregation to "
                             f"recompute it from its samples (aggregations edited or removed)")


def _is_control(key: str) -> bool:
    """Controls (``artifact_acc``, ``blind_acc``, ...) carry intervals of their own resampling, not an
    aggregation of the samples."""
    from ..errors import UnknownNameError
    from ..metrics.registry import get

    try:
        return get(key).control
    except UnknownNameError:
        return False


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
    except (KeyError, TypeError, ValueError, AttributeError, ResultsError) as e:
        raise IntegrityError(f"{path}: its samples do not give its metrics ({type(e).__name__}: {e})") from None
    check_derived(path, record, recomputed, "its samples")


def check_derived(where: Path | str, record: ResultRecord, derived: dict, source: str) -> None:
    """Every metric of ``record`` in ``derived`` (``ClusterSums.compute()`` of its records, or of a
    baseline's stored per-image sums) equals it to float tolerance; ``IntegrityError`` naming the metric."""
    for key, values in derived.items():
        if key not in record.metrics:
            continue
        stored, value = float(record.metrics[key]), float(values[0])
        if not math.isclose(stored, value, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            raise IntegrityError(f"{where}: metric {key!r} is {stored!r}, but {source} give {value!r}: they "
                                 f"disagree (edited or mixed files)")
