"""The regression gate: compare results with a baseline file, metric by metric (no torch).

A metric *regressed* only when both hold: the change in the bad direction (from the metric
registry: CHAIR is lower-is-better) exceeds the tolerance (absolute metric points), and the 95%
interval of the difference lies entirely on the bad side of 0 (paired bootstrap over the shared
images when per-sample data exist on both sides, else the two stored intervals combined; with
neither, the tolerance alone decides). *Improved* is the mirror image; anything else is
*unchanged*. A (model, task) of the baseline that has no full result now is *missing* (partial
``--limit`` runs are never checked); one whose task version, task config hash, dataset fingerprint
or seed changed is reported as such instead of being compared. All of these fail the check; results
not in the baseline are listed as *new*. With a list of metrics, a task is gated on those of the
list its baseline result reports.

Tolerances come from a YAML file (``yaml.safe_load``)::

    tolerance: 1.0        # default, in metric points (percent for proportions)
    metrics: main         # which metrics to gate: main | all | [list of keys]
    tasks:
      coco-retrieval: {tolerance: 0.5, metrics: all, per_metric: {t2i_R@1: 1.0}}
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError, ResultsError
from ..metrics.controls import holm
from .baseline import Baseline
from .chance import artifact_flags, artifact_text, entry_status, is_control_metric, no_skill
from .collect import Collection, Entry, pick
from .leaderboard import metric_direction
from .paired import Difference, differences, select_metrics

DEFAULT_TOLERANCE = 1.0
FAILING = ("regressed", "missing", "version_changed", "config_changed", "dataset_changed", "seed_changed")
STATUSES = FAILING + ("improved", "unchanged", "new")
_TOP_KEYS = {"tolerance", "metrics", "tasks"}
_TASK_KEYS = {"tolerance", "metrics", "per_metric"}


@dataclass
class Rule:
    """How one task is gated: default tolerance, which metrics, per-metric tolerances."""

    tolerance: float = DEFAULT_TOLERANCE
    metrics: str | list[str] = "main"
    per_metric: dict[str, float] = field(default_factory=dict)

    def tolerance_for(self, metric: str) -> float:
        return self.per_metric.get(metric, self.tolerance)

    def select(self, entry: Entry) -> list[str]:
        """The metrics of the baseline ``entry`` to gate (see ``paired.select_metrics``; ``all`` without the
        control metrics)."""
        keys = select_metrics(entry, self.metrics)
        return [k for k in keys if not is_control_metric(k)] if self.metrics == "all" else keys


@dataclass
class Rules:
    default: Rule = field(default_factory=Rule)
    tasks: dict[str, Rule] = field(default_factory=dict)

    def for_task(self, task: str) -> Rule:
        return self.tasks.get(task, self.default)


def _tolerance(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
        raise ConfigError(f"{where}: expected a tolerance >= 0 in metric points, found {value!r}")
    return float(value)


def _metrics(value: object, where: str) -> str | list[str]:
    if value in ("main", "all"):
        return str(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: expected 'main', 'all' or a list of metric keys, found {value!r}")


def load_rules(path: Path | str | None = None, tolerance: float | None = None, metrics: str | None = None) -> Rules:
    """Rules from a tolerance YAML (or defaults); ``tolerance``/``metrics`` override its top level."""
    raw: object = {}
    if path is not None:
        path = Path(path)
        if path.exists() and not path.is_file():  # a FIFO would block
            raise ConfigError(f"{path}: not a regular file; expected a tolerance YAML")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read tolerance file ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a tolerance YAML") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
    where = str(path) if path is not None else "tolerances"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(_TOP_KEYS)}, found {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(_TOP_KEYS)}")
    default = Rule(_tolerance(raw.get("tolerance", DEFAULT_TOLERANCE), f"{where}: tolerance"),
                   _metrics(raw.get("metrics", "main"), f"{where}: metrics"))
    if tolerance is not None:
        default.tolerance = _tolerance(tolerance, "--tolerance")
    if metrics is not None:
        default.metrics = _metrics(metrics, "--metrics")
    tasks_raw = raw.get("tasks") or {}
    if not isinstance(tasks_raw, dict):
        raise ConfigError(f"{where}: tasks must map task names to {{tolerance, metrics, per_metric}}")
    tasks = {}
    for name, spec in tasks_raw.items():
        at = f"{where}: tasks.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{at}: expected a mapping with keys {sorted(_TASK_KEYS)}, found {spec!r}")
        unknown = sorted(set(spec) - _TASK_KEYS)
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {unknown}; valid keys are {sorted(_TASK_KEYS)}")
        per = spec.get("per_metric") or {}
        if not isinstance(per, dict):
            raise ConfigError(f"{at}.per_metric: expected a mapping of metric key to tolerance, found {per!r}")
        tasks[str(name)] = Rule(_tolerance(spec.get("tolerance", default.tolerance), f"{at}.tolerance"),
                                _metrics(spec.get("metrics", default.metrics), f"{at}.metrics"),
                                {str(k): _tolerance(v, f"{at}.per_metric.{k}") for k, v in per.items()})
    return Rules(default, tasks)


@dataclass
class CheckRow:
    """One line of the report: a metric comparison, or a (model, task) problem (``metric`` empty)."""

    status: str
    model: str
    task: str
    metric: str = ""
    baseline: float = math.nan
    current: float = math.nan
    difference: Difference | None = None
    tolerance: float = math.nan
    higher_is_better: bool = True
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.status in FAILING


@dataclass
class CheckReport:
    rows: list[CheckRow]
    baseline: Baseline
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        counts = self.counts
        parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in STATUSES if counts[s]]
        verdict = "FAILED" if self.failed else "passed"
        return f"check {verdict}: " + (", ".join(parts) if parts else "nothing to compare")


def _dataset_text(e: Entry) -> str:
    ds = e.dataset
    return f"{str(e.fingerprint)[:12]} (n={ds.n_used}/{ds.n_total}, limit={ds.limit})"


def _identity_row(base: Entry, cur: Entry) -> CheckRow | None:
    model, task = base.model, base.task
    if cur.version != base.version:
        return CheckRow("version_changed", model, task, message=(
            f"task version {base.version} in the baseline, {cur.version} in {cur.label}: numbers are not "
            f"comparable; save a new baseline if the change is intended"))
    if cur.config_sha256 != base.config_sha256:
        return CheckRow("config_changed", model, task, message=(
            f"task config {base.config_sha256[:12]} in the baseline, {cur.config_sha256[:12]} in {cur.label} "
            f"(same version {cur.version}: a --param override or an unversioned YAML edit)"))
    if cur.fingerprint != base.fingerprint:
        return CheckRow("dataset_changed", model, task, message=(
            f"dataset {_dataset_text(base)} in the baseline, {_dataset_text(cur)} in {cur.label}"))
    if cur.seed != base.seed:
        return CheckRow("seed_changed", model, task, message=(
            f"seed {base.seed} in the baseline, {cur.seed} in {cur.label}: numbers are not comparable; "
            f"run with --seed {base.seed} or save a new baseline"))
    return None


def _metric_rows(base: Entry, cur: Entry, sums, rule: Rule, seed: int, warnings: list[str]) -> list[CheckRow]:
    metrics = rule.select(base)
    diffs, _ = differences(base, cur, metrics, seed, sums_a=sums, warn=warnings.append)
    rows = []
    for k in metrics:
        hib = metric_direction(k)[0]
        tol = rule.tolerance_for(k)
        b, c = base.value(k), cur.value(k)
        if math.isnan(b) or math.isnan(c):
            where = "the baseline" if math.isnan(b) else cur.label
            rows.append(CheckRow("missing", base.model, base.task, k, b, c, None, tol, hib,
                                 f"metric {k} is not in {where}"))
            continue
        d = diffs[k]
        worse = -d.diff if hib else d.diff
        if d.has_noise:
            bad_side, good_side = (d.hi < 0, d.lo > 0) if hib else (d.lo > 0, d.hi < 0)
        else:
            bad_side, good_side = worse > 0, worse < 0
        eps = 1e-9
        if worse > tol + eps and bad_side:
            status, note = "regressed", f"worse by {abs(d.diff):.2f} > tolerance {tol:g}, outside the noise"
        elif -worse > tol + eps and good_side:
            status, note = "improved", f"better by {abs(d.diff):.2f} > tolerance {tol:g}, outside the noise"
        elif abs(d.diff) <= tol + eps:
            status, note = "unchanged", "within tolerance"
        else:
            status, note = "unchanged", "beyond tolerance but within the noise (the 95% interval includes 0)"
        if d.method == "none":
            note += "; no noise estimate (no per-sample records or intervals)"
        if status in ("regressed", "improved") and no_skill(entry_status(base, k)) and no_skill(entry_status(cur, k)):
            status, note = "unchanged", "both at or below chance: not a change in skill"
        rows.append(CheckRow(status, base.model, base.task, k, b, c, d, tol, hib, note))
    return rows


def _holm(rows: list[CheckRow]) -> int:
    """Turn regressions and improvements whose p-value does not survive Holm's correction over every compared
    metric with a noise estimate into *unchanged*; returns the number of comparisons."""
    tested = [r for r in rows if r.difference is not None and r.difference.has_noise and not math.isnan(r.difference.p_value)]
    if not tested:
        return 0
    for r, p in zip(tested, holm([r.difference.p_value for r in tested])):
        if r.status in ("regressed", "improved") and p > 0.05:
            r.message = (f"beyond tolerance, but not significant after Holm's correction over {len(tested)} compared "
                         f"metrics (adjusted p = {p:.3f})")
            r.status = "unchanged"
    return len(tested)


def _check_listed_metrics(rules: Rules, baseline: Baseline) -> None:
    """A metric listed (``--metrics`` or tolerances) that none of the baseline results it applies to reports
    would gate nothing (a typo): ``ConfigError`` listing the keys they report."""
    reported: dict[str, set[str]] = {}
    for (_, task), e in baseline.entries.items():
        reported.setdefault(task, set()).update(e.metrics)
    found: dict[str, bool] = {}
    for task, keys in reported.items():
        metrics = rules.for_task(task).metrics
        if isinstance(metrics, list):
            for k in metrics:
                found[k] = found.get(k, False) or k in keys
    unused = sorted(k for k, ok in found.items() if not ok)
    if unused:
        known = sorted(set().union(*reported.values())) if reported else []
        raise ConfigError(f"--metrics/tolerances: {', '.join(unused)} reported by none of the baseline results it "
                          f"applies to, so it would gate nothing; known: {', '.join(known) or '(none)'}, or main, all")


def run_check(collection: Collection, baseline: Baseline, rules: Rules | None = None,
              model_map: Mapping[str, str] | None = None, seed: int = 0) -> CheckReport:
    """Compare ``collection`` with ``baseline``.

    ``model_map``: current model name -> baseline model name; when given, only those models are
    checked (on both sides).
    """
    rules = rules or Rules()
    _check_listed_metrics(rules, baseline)
    mapping = dict(model_map or {})
    kept, conflicts = pick(e for e in collection.entries if not e.partial and not e.imported)
    warnings = [f"warning: {c.kept.model} / {c.kept.task}: {c.describe()}" for c in conflicts]
    imported = sorted(e.label for e in collection.entries if e.imported)
    if imported:
        warnings.append(f"warning: {len(imported)} imported result(s) not checked (no samples): {', '.join(imported)}")
    partial = [e for e in collection.entries if e.partial and (not mapping or e.model in mapping)]
    if partial:
        warnings.append(f"warning: {len(partial)} partial (--limit) result(s) not checked: "
                        f"{', '.join(sorted(e.label for e in partial))}")
    partial_keys = {(mapping.get(e.model, e.model), e.task) for e in partial}
    if mapping:
        unknown = sorted(set(mapping.values()) - set(baseline.models))
        if unknown:
            raise ResultsError(f"{baseline.path}: no baseline model(s) {unknown}; it holds {baseline.models}")
        kept = {(m, t): e for (m, t), e in kept.items() if m in mapping}
    current = {(mapping.get(m, m), t): e for (m, t), e in kept.items()}
    wanted = set(mapping.values()) if mapping else set(baseline.models)
    rows: list[CheckRow] = []
    for key in sorted(k for k in baseline.entries if k[0] in wanted):
        base, cur = baseline.entries[key], current.get(key)
        if cur is None:
            only_partial = key in partial_keys
            rows.append(CheckRow("missing", *key, metric=base.main_metric, baseline=base.value(),
                                 higher_is_better=metric_direction(base.main_metric)[0],
                                 message=f"no {'full (only a partial --limit) ' if only_partial else ''}result for "
                                         f"model {key[0]!r}, task {key[1]!r} in the results checked"))
            continue
        problem = _identity_row(base, cur)
        if problem is not None:
            rows.append(problem)
            continue
        rows += _metric_rows(base, cur, baseline.sums.get(key), rules.for_task(key[1]), seed, warnings)
    for key in sorted(set(current) - set(baseline.entries)):
        e = current[key]
        rows.append(CheckRow("new", *key, metric=e.main_metric, current=e.value(),
                             higher_is_better=metric_direction(e.main_metric)[0],
                             message=f"{e.label} is not in the baseline"))
    _holm(rows)
    flagged = {e.task: artifact_flags(e) for e in current.values() if artifact_flags(e)}
    warnings += [f"warning: {artifact_text(t, cats)}" for t, cats in sorted(flagged.items())]
    order = {s: i for i, s in enumerate(STATUSES)}
    rows.sort(key=lambda r: (order[r.status], r.model, r.task, r.metric))
    return CheckReport(rows, baseline, warnings)
