"""Red-team suite (issue 15): hostile and damaged input everywhere a user, a disk or a stranger can put it.

One table per category: result files damaged x every reader (and the baseline file, and the results
commands' options); ``run`` preflight and options; datasets through ``run`` and ``data verify``; archives
(zip/tar path traversal, links, zip and gzip bombs); model files and checkpoints (malicious pickles in
every container, damaged or non-finite weights, config.json faults, models returning NaN); the embedding
cache and the file-hash memo; injection into every leaderboard format and the check/compare reports; the
process boundary (kill -9 and resume, concurrent runs); FIFOs in place of files (hangs). Every case
asserts the exit code, that the message names the file or field, that no traceback is printed, and that
nothing was lost or half-written: no temp files, no result JSON without its samples, earlier results
byte-identical, nothing left in -o by a refused run.

Everything runs in-process (click's CliRunner) except the process-boundary cases, whose real processes
start with the module (they run beside the in-process cases) and are checked at its end. Expected
outcomes: ``error`` = refused with exit 2 naming the file or field; ``handled`` = the damage is repaired,
skipped with a warning naming it, or harmless (exit 0, or the documented exit 1 of ``check`` and
``data verify``).
"""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import test_dataset_checks as dc
import torch
from click.testing import CliRunner
from conftest import TINY_OPEN_CLIP

import sparc_eval
from sparc_eval.cli import cli as CLI
from sparc_eval.results.aggregate import ClusterSums, intervals
from sparc_eval.results.collect import collect
from sparc_eval.results.store import result_path, write_result

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"
PERMUTED = "py:sparc_eval.models.oracle:shapes_oracle_permuted"
TASK = "shapes-retrieval"


# -- shared checks ---------------------------------------------------------------------------------------


def invoke(*args, env: dict | None = None):
    return CliRunner().invoke(CLI, [str(a) for a in args], env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


def expect(r, code: int, *names) -> None:
    """Exit ``code``, no traceback, and every one of ``names`` (file, field, what was found) in the output."""
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    out = flat(r.output)
    for name in names:
        assert flat(str(name)) in out, (name, r.output)


def debris(*roots: Path) -> list[str]:
    """What a killed or refused writer could leave: temp files and folders, and result JSONs whose
    samples file is missing."""
    bad = []
    for root in roots:
        if not root.exists():
            continue
        for p in root.rglob("*"):
            if p.name.endswith(".tmp") or p.name.startswith((".tmp-", ".extract-", ".write-probe-")):
                bad.append(str(p))
            elif p.suffix == ".json" and "." not in p.stem and not p.name.startswith("."):
                try:
                    named = json.loads(p.read_text()).get("samples")
                except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
                    continue
                if isinstance(named, str) and "/" not in named and not (p.parent / named).is_file():
                    bad.append(f"{p} without {named}")
    return bad


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (``{}`` when it does not exist)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def invoke_unblocking(fifos: list[Path], *args):
    """``invoke(*args)`` in a thread while the test watches ``fifos``: a command that opens one for reading
    would block there for good (a hang), so each open is met (the FIFO opened for writing and closed: the
    reader sees an empty file) and reported. Returns (result, whether any FIFO was opened)."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=invoke(*args)), daemon=True)
    thread.start()
    opened = False
    while thread.is_alive():
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO unless a reader is waiting
                opened = True
            except OSError:
                pass
        thread.join(0.05)
    return box["result"], opened


def run_args(world: Path, model: str = ORACLE, *extra, quiet: bool = True) -> list:
    return ["run", *(["-q"] if quiet else []), "--task", TASK, "--param", f"root={world}", "--model", model,
            "--pretrained", world, *extra]


@dataclass
class Case:
    """One row of a table: ``make`` damages or builds the input (and may return extra arguments); the run
    must exit ``code`` naming each of ``names``."""

    id: str
    make: Callable
    code: int
    names: tuple


def table(*cases: Case) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


# == 1. result files damaged x every reader ===============================================================
#
# Two real results (the permuted oracle, at chance, and the oracle) are written by `run` once; each case
# damages a copy of them as a disk, a careless edit or a stranger would, and every reader must refuse it
# naming the file (and the metric), or, for a file that is not a result at all, skip it with a warning
# naming it. Readers never write into the results folder, and nothing is written when they refuse.

A_JSON = Path("perm") / f"{TASK}.json"
A_SAMPLES = Path("perm") / f"{TASK}.samples.jsonl"


@pytest.fixture(scope="module")
def results_base(small_world, tmp_path_factory) -> tuple[Path, Path]:
    """(results folder of `perm` and `oracle`, a baseline saved from it)."""
    base = tmp_path_factory.mktemp("results-base") / "r"
    cache = base.parent / "cache"
    for spec, name in ((PERMUTED, "perm"), (ORACLE, "oracle")):
        r = invoke(*run_args(small_world, spec, "--model-name", name, "-o", base, "--cache-dir", cache))
        assert r.exit_code == 0, r.output
    baseline = base.parent / "baseline.json"
    r = invoke("baseline", "save", base, "-o", baseline)
    assert r.exit_code == 0, r.output
    return base, baseline


def _edit(root: Path, change: Callable[[dict], object]) -> None:
    p = root / A_JSON
    data = json.loads(p.read_text())
    change(data)
    p.write_text(json.dumps(data))


def _edit_text(root: Path, change: Callable[[dict], object], placeholder: str, raw: str) -> None:
    """Edit the JSON, then put ``raw`` (JSON text Python would not write, e.g. 1e999) where ``placeholder`` is."""
    _edit(root, change)
    p = root / A_JSON
    p.write_text(p.read_text().replace(json.dumps(placeholder), raw))


def _samples(root: Path, change: Callable[[list[str]], list[str]]) -> None:
    p = root / A_SAMPLES
    p.write_text("".join(change(p.read_text().splitlines(keepends=True))))


def _every_hit(lines: list[str]) -> list[str]:
    return [json.dumps({k: (1.0 if "R@" in k else v) for k, v in json.loads(x).items()}, sort_keys=True) + "\n"
            for x in lines]


def _v1(data: dict) -> None:
    data["schema"] = "sparc-eval/result/v1"
    data.pop("samples_sha256")
    data.pop("samples_count")


def _metric(key: str, value) -> Callable[[dict], None]:
    return lambda d: d["metrics"].update({key: value})


JSON, SAMPLES = A_JSON.name, A_SAMPLES.name
REFUSE, SKIP = "refuse", "skip"

RESULT_DAMAGE = [
    # samples file changed after the result was written (the issue's silently wrong cases)
    ("samples-half-removed", lambda r: _samples(r, lambda x: x[: len(x) // 2]), REFUSE, (SAMPLES, "sha256")),
    ("samples-every-hit-1", lambda r: _samples(r, _every_hit), REFUSE, (SAMPLES, "sha256")),
    ("samples-line-duplicated", lambda r: _samples(r, lambda x: x + x[:1]), REFUSE, (SAMPLES, "sha256")),
    ("samples-deleted", lambda r: (r / A_SAMPLES).unlink(), REFUSE, (JSON, "cannot be read")),
    ("samples-emptied", lambda r: (r / A_SAMPLES).write_text(""), REFUSE, (SAMPLES, "sha256")),
    ("samples-cut-mid-line", lambda r: (r / A_SAMPLES).write_bytes((r / A_SAMPLES).read_bytes()[:-30]), REFUSE,
     (SAMPLES, "sha256")),
    ("samples-of-another-model", lambda r: shutil.copy(r / "oracle" / SAMPLES, r / A_SAMPLES), REFUSE,
     (SAMPLES, "sha256")),
    ("samples-is-a-folder", lambda r: ((r / A_SAMPLES).unlink(), (r / A_SAMPLES).mkdir()), REFUSE,
     (JSON, "not a regular file")),
    ("samples-is-a-fifo", lambda r: ((r / A_SAMPLES).unlink(), os.mkfifo(r / A_SAMPLES)), REFUSE,  # was a hang
     (JSON, "not a regular file")),
    # metrics edited, or not finite numbers (Infinity ranked first; "within tolerance" in check)
    ("metric-edited", lambda r: _edit(r, _metric("mean_R@1", 61.63)), REFUSE, (JSON, "'mean_R@1'", "61.63")),
    ("metric-infinity", lambda r: _edit(r, _metric("mean_R@1", float("inf"))), REFUSE,
     (JSON, "'mean_R@1' is inf, not a finite number")),
    ("metric-nan", lambda r: _edit(r, _metric("mean_R@1", float("nan"))), REFUSE, (JSON, "'mean_R@1' is nan")),
    ("metric-minus-infinity", lambda r: _edit(r, _metric("t2i_R@5", float("-inf"))), REFUSE,
     (JSON, "'t2i_R@5' is -inf")),
    ("metric-1e999", lambda r: _edit_text(r, _metric("mean_R@1", "@X@"), "@X@", "1e999"), REFUSE,
     (JSON, "'mean_R@1' is inf")),
    ("metric-string", lambda r: _edit(r, _metric("mean_R@1", "61.63")), REFUSE, (JSON, "'mean_R@1' is '61.63'")),
    ("metric-null", lambda r: _edit(r, _metric("mean_R@1", None)), REFUSE, (JSON, "'mean_R@1' is None")),
    ("metric-bool", lambda r: _edit(r, _metric("i2t_R@1", True)), REFUSE, (JSON, "'i2t_R@1' is True")),
    # files written before the sums (schema v1): the samples still decide
    ("v1-metric-edited", lambda r: _edit(r, lambda d: (_v1(d), _metric("mean_R@1", 61.63)(d))), REFUSE,
     (JSON, "'mean_R@1' is 61.63, but its samples give")),
    ("v1-samples-every-hit-1", lambda r: (_edit(r, _v1), _samples(r, _every_hit)), REFUSE,
     (JSON, "but its samples give 100.0")),
    # the fields that say how to check a result
    ("samples-count-edited", lambda r: _edit(r, lambda d: d.update(samples_count=d["samples_count"] + 1)), REFUSE,
     (SAMPLES, "records, but", JSON, "stores")),
    ("samples-sha256-edited", lambda r: _edit(r, lambda d: d.update(samples_sha256="0" * 64)), REFUSE,
     (SAMPLES, "sha256")),
    ("samples-sha256-not-text", lambda r: _edit(r, lambda d: d.update(samples_sha256=12345)), REFUSE,
     (JSON, "'samples_sha256' is 12345")),
    ("samples-name-dotdot", lambda r: _edit(r, lambda d: d.update(samples=f"../oracle/{SAMPLES}")), REFUSE,
     (JSON, "field 'samples' is '../oracle/", "not a path")),
    ("samples-name-absolute", lambda r: _edit(r, lambda d: d.update(samples="/etc/passwd")), REFUSE,
     (JSON, "field 'samples' is '/etc/passwd'")),
    ("samples-name-removed-metric-edited", lambda r: _edit(r, lambda d: (d.pop("samples"),
                                                                        _metric("mean_R@1", 61.63)(d))),
     REFUSE, (JSON, "field 'samples' naming the samples file is missing")),
    ("aggregations-removed-metric-edited", lambda r: _edit(r, lambda d: (d.pop("aggregations"),
                                                                        _metric("mean_R@1", 61.63)(d))),
     REFUSE, (JSON, "has a bootstrap interval but no aggregation")),
    ("aggregation-not-an-object", lambda r: _edit(r, lambda d: d["aggregations"].update({"mean_R@1": 7})), REFUSE,
     (JSON, "aggregations['mean_R@1'] is malformed")),
    ("aggregation-unknown-kind", lambda r: _edit(r, lambda d: d["aggregations"].update(
        {"mean_R@1": {"kind": "median"}})), REFUSE, (JSON, "unknown kind 'median'")),
    ("marked-imported-metric-edited", lambda r: _edit(r, lambda d: (d.update(kind="imported"),
                                                                   _metric("mean_R@1", 61.63)(d))),
     REFUSE, (JSON, "kind 'imported' but it names per-sample records")),
    # not a result at all: skipped with a warning naming it (one bad file never breaks a board)
    ("json-truncated", lambda r: (r / A_JSON).write_text((r / A_JSON).read_text()[:300]), SKIP,
     ("skipped", JSON, "not valid JSON")),
    ("json-not-utf8", lambda r: (r / A_JSON).write_bytes(b"\xff\xfe\x00{garbage"), SKIP, ("skipped", JSON, "not UTF-8")),
    ("json-nested-too-deep", lambda r: (r / A_JSON).write_text("[" * 100_000 + "]" * 100_000), SKIP,
     ("skipped", JSON, "nested too deeply")),
    ("json-not-an-object", lambda r: (r / A_JSON).write_text("[1, 2]"), SKIP, ("skipped", JSON, "found list")),
    ("dataset-count-not-a-number", lambda r: _edit(r, lambda d: d["dataset"].update(n_used="lots")), SKIP,
     ("skipped", JSON, "dataset.n_used is 'lots'")),
    ("main-metric-unknown", lambda r: _edit(r, lambda d: d.update(main_metric="mean_R@99")), SKIP,
     ("skipped", JSON, "main_metric 'mean_R@99' is not among metrics")),
]

READERS = ["leaderboard", "compare", "check", "baseline-save"]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("damage, make, kind, names", RESULT_DAMAGE, ids=[d[0] for d in RESULT_DAMAGE])
def test_damaged_result_x_reader(results_base, tmp_path, damage, make, kind, names, reader):
    base, baseline = results_base
    root = tmp_path / "r"
    shutil.copytree(base, root)
    make(root)
    before = files(root)
    fifos = [p for p in root.rglob("*") if p.is_fifo()]
    outs = {"leaderboard": tmp_path / "board.html", "check": tmp_path / "report.xml",
            "baseline-save": tmp_path / "base.json"}
    args = {"leaderboard": ["leaderboard", root, "-o", outs["leaderboard"]],
            "compare": ["compare", root / "perm", root / "oracle", "--metrics", "all"],
            "check": ["check", root, "--baseline", baseline, "--junit", outs["check"], "--metrics", "all"],
            "baseline-save": ["baseline", "save", root, "-o", outs["baseline-save"]]}[reader]
    r, opened = invoke_unblocking(fifos, *args)
    assert not opened  # a FIFO in place of a file is never opened (it would block: a hang)
    if kind == REFUSE:
        expect(r, 2, *names)
        assert not any(p.exists() for p in outs.values())  # nothing written on a refusal
    else:  # skipped with a warning naming the file; `compare` has nothing left in A; `check` misses it
        code = {"leaderboard": 0, "compare": 2, "check": 1, "baseline-save": 0}[reader]
        expect(r, code, *names)
        if reader == "leaderboard":
            page = outs["leaderboard"].read_text()
            assert ">oracle<" in page and ">perm<" not in page
        if reader == "baseline-save":
            saved = json.loads(outs["baseline-save"].read_text())
            assert [i["result"]["model"]["name"] for i in saved["results"]] == ["oracle"]
        if reader == "check":
            assert "missing" in r.output
    assert files(root) == before  # readers never write into the results
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


# -- 1b. the baseline file and the options of the results commands ----------------------------------------



def _baseline_edit(change: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    def make(baseline: Path, tmp: Path) -> Path:
        data = json.loads(baseline.read_text())
        change(data)
        out = tmp / "edited-baseline.json"
        out.write_text(json.dumps(data))
        return out
    return make


def _baseline_bytes(data: bytes) -> Callable[[Path, Path], Path]:
    def make(baseline: Path, tmp: Path) -> Path:
        out = tmp / "broken-baseline.json"
        out.write_bytes(data(baseline) if callable(data) else data)
        return out
    return make


def _oracle_metric(value) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        item = next(i for i in d["results"] if i["result"]["model"]["name"] == "oracle")
        item["result"]["metrics"]["mean_R@1"] = value
    return change


BASELINE_DAMAGE = table(
    Case("baseline-truncated", _baseline_bytes(lambda b: b.read_bytes()[:100]), 2, ("broken-baseline.json",
                                                                                      "not valid JSON")),
    Case("baseline-not-a-baseline", _baseline_edit(lambda d: d.update(schema="x")), 2,
         ("edited-baseline.json", "not a sparc-eval baseline")),
    Case("baseline-cluster-sums-garbage", _baseline_edit(lambda d: d["results"][0].update(clusters={"x": 1})), 2,
         ("edited-baseline.json", "results[0]", "per-cluster sums are malformed")),
    Case("baseline-metric-infinity", _baseline_edit(_oracle_metric(float("inf"))), 2,
         ("edited-baseline.json", "'mean_R@1' is inf")),
    Case("baseline-metric-nan", _baseline_edit(_oracle_metric(float("nan"))), 2,
         ("edited-baseline.json", "'mean_R@1' is nan")),
    Case("baseline-metric-edited", _baseline_edit(_oracle_metric(99.0)), 2,
         ("edited-baseline.json", "'mean_R@1'", "99.0")),
    Case("baseline-not-utf8", _baseline_bytes(b"\xff\xfe{"), 2, ("broken-baseline.json", "UTF-8")),
    Case("baseline-nested-too-deep", _baseline_bytes(b"[" * 100_000 + b"]" * 100_000), 2,
         ("broken-baseline.json", "nested")),
)


@pytest.mark.parametrize("case", BASELINE_DAMAGE)
def test_damaged_baseline(results_base, tmp_path, case):
    base, baseline = results_base
    bad = case.make(baseline, tmp_path)
    r = invoke("check", base, "--baseline", bad, "--junit", tmp_path / "report.xml")
    expect(r, case.code, *case.names)
    assert not (tmp_path / "report.xml").exists()


def _yaml(text: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / "tolerances.yaml"
        p.write_text(text)
        return p
    return make


RESULTS_OPTIONS = table(
    # the issue: `compare --metrics nonexistent` printed an empty table with exit 0
    Case("compare-metrics-unknown", lambda base, bl, t: ["compare", base / "perm", base / "oracle", "--metrics",
                                                          "nonexistent"], 2, ("--metrics nonexistent", "i2t_R@1")),
    Case("check-metrics-unknown", lambda base, bl, t: ["check", base, "--baseline", bl, "--metrics", "nonexistent"],
         2, ("nonexistent", "i2t_R@1")),
    Case("check-tolerances-python-tag", lambda base, bl, t: ["check", base, "--baseline", bl, "--tolerances",
                                                             _yaml("!!python/object/apply:os.system ['touch "
                                                                   f"{t / 'pwned'}']\n")(t)],
         2, ("tolerances.yaml", "not valid YAML")),
    Case("check-tolerances-nan", lambda base, bl, t: ["check", base, "--baseline", bl, "--tolerances",
                                                      _yaml("tolerance: .nan\n")(t)], 2, ("tolerances.yaml",
                                                                                          "found nan")),
    Case("check-tolerances-unknown-key", lambda base, bl, t: ["check", base, "--baseline", bl, "--tolerances",
                                                              _yaml("tolerence: 1\n")(t)], 2,
         ("tolerances.yaml", "unknown key(s) ['tolerence']")),
    Case("check-tolerance-negative", lambda base, bl, t: ["check", base, "--baseline", bl, "--tolerance", "-1"], 2,
         ("--tolerance", "found -1.0")),
    Case("check-tolerance-nan", lambda base, bl, t: ["check", base, "--baseline", bl, "--tolerance", "nan"], 2,
         ("--tolerance", "found nan")),
    Case("check-map-malformed", lambda base, bl, t: ["check", base, "--baseline", bl, "--map", "x"], 2,
         ("--map 'x'", "CURRENT=BASELINE")),
    Case("compare-missing-folder", lambda base, bl, t: ["compare", base / "perm", t / "nope"], 2,
         ("nope", "no such file or folder")),
    Case("leaderboard-output-suffix", lambda base, bl, t: ["leaderboard", base, "-o", t / "board.exe"], 2,
         ("board.exe", "unknown leaderboard format '.exe'")),
    Case("leaderboard-output-under-a-file", lambda base, bl, t: ["leaderboard", base, "-o", bl / "board.md"], 2,
         ("baseline.json",)),
    Case("leaderboard-baseline-unknown", lambda base, bl, t: ["leaderboard", base, "--baseline", "nobody"], 2,
         ("baseline model or seed group 'nobody'", "oracle, perm")),
    Case("leaderboard-empty-folder", lambda base, bl, t: ["leaderboard", t], 2, ("no result files found",)),
)


@pytest.mark.parametrize("case", RESULTS_OPTIONS)
def test_results_command_options(results_base, tmp_path, case):
    base, baseline = results_base
    before = files(base)
    expect(invoke(*case.make(base, baseline, tmp_path)), case.code, *case.names)
    assert files(base) == before and not (tmp_path / "pwned").exists()
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".exe", ".md", ".xml")]


# == 2. `run`: preflight and options ======================================================================
#
# Everything a user can get wrong is refused before a model loads (each within seconds), with nothing
# written into -o (not even the identity file that binds a results folder to a model).


def _unwritable(tmp: Path) -> Path:
    """A folder nothing can be written in (as root, permissions do not stop writes: /proc refuses)."""
    if os.geteuid() == 0:
        return Path("/proc/sparc-eval-red-team")
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def _text_file(name: str, data: bytes | str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p
    return make


BAD_TASK = "name: unk\ntype: retrieval\nversion: 1\nbogus: 1\nmain_metric: mean_R@1\n" \
           "dataset: {format: karpathy, root: /x, annotations: a.json, split: test}\n"


def _pre(id, args, *names, code=2):
    """A preflight case: ``args(world, tmp)`` -> extra `run` arguments after the standard oracle run."""
    return Case(id, args, code, names)


def _std(*extra):
    return lambda w, t: [*run_args(w), *extra]


def _bare(*extra):
    return lambda w, t: ["run", "-q", *extra]


def _model(spec: str, *extra):
    return lambda w, t: ["run", "-q", "--task", TASK, "--param", f"root={w}", "--model", spec, *extra]


PREFLIGHT = table(
    # the issue's cases
    _pre("no-task", _bare("--model", ORACLE), "nothing to run", "--task"),
    _pre("seed-negative", _std("--seed", "-5"), "--seed", "-5"),
    _pre("model-name-5000-chars", _std("--model-name", "m" * 5000), "5000 characters; expected at most 120"),
    _pre("recall-at-overflows-int64", _std("--param", "recall_at=[1,99999999999999999999]"),
         "params.recall_at", "is too large; expected a value <= 1e+09"),
    _pre("output-is-a-file", lambda w, t: [*run_args(w), "-o", _text_file("file", "x")(t)], "-o/--output", "is a file"),
    _pre("output-under-a-file", lambda w, t: [*run_args(w), "-o", _text_file("file", "x")(t) / "sub"],
         "-o/--output", "cannot write there"),
    _pre("output-unwritable", lambda w, t: [*run_args(w), "-o", _unwritable(t)], "-o/--output", "cannot write there"),
    # seeds, sizes, shards, devices
    _pre("seed-2^32", _std("--seed", str(2**32)), "--seed", "4294967296"),
    _pre("seed-not-a-number", _std("--seed", "abc"), "--seed", "'abc'"),
    _pre("model-name-121-chars", _std("--model-name", "m" * 121), "121 characters"),
    _pre("limit-0", _std("--limit", "0"), "--limit", "0 is not in the range"),
    _pre("batch-size-0", _std("--batch-size", "0"), "--batch-size"),
    _pre("num-workers-negative", _std("--num-workers", "-1"), "--num-workers"),
    _pre("resolution-4", _std("--resolution", "4"), "--resolution"),
    _pre("shard-0-of-3", _std("--shard", "0/3"), "--shard 0/3: expected 1 <= i <= n"),
    _pre("shard-4-of-3", _std("--shard", "4/3"), "--shard 4/3"),
    _pre("shard-1-of-0", _std("--shard", "1/0"), "--shard 1/0"),
    _pre("shard-not-i-of-n", _std("--shard", "x"), "--shard 'x'", "I/N"),
    _pre("device-unknown", _std("--device", "tpu:7"), "--device 'tpu:7'"),
    # --param: bounds, types, YAML tricks
    _pre("recall-at-1e9+1", _std("--param", "recall_at=[1,1000000001]"), "params.recall_at", "1000000001 is too large"),
    _pre("recall-at-empty", _std("--param", "recall_at=[]"), "params.recall_at", "at least one value"),
    _pre("recall-at-0", _std("--param", "recall_at=[0]"), "params.recall_at", "0 is too small"),
    _pre("recall-at-negative", _std("--param", "recall_at=[-1]"), "params.recall_at", "-1 is too small"),
    _pre("recall-at-float", _std("--param", "recall_at=[1.5]"), "params.recall_at", "expected int, found 1.5"),
    _pre("recall-at-text", _std("--param", "recall_at=abc"), "params.recall_at", "found 'abc'"),
    _pre("recall-at-bool", _std("--param", "recall_at=[true]"), "params.recall_at", "found True"),
    _pre("recall-at-nan", _std("--param", "recall_at=[.nan]"), "params.recall_at", "found nan"),
    _pre("recall-at-inf", _std("--param", "recall_at=[.inf]"), "params.recall_at", "found inf"),
    _pre("recall-at-nested", _std("--param", "recall_at=[[1]]"), "params.recall_at", "found [1]"),
    _pre("param-yaml-self-reference", _std("--param", "recall_at=&a [1, *a]"), "params.recall_at"),
    _pre("param-yaml-python-tag", lambda w, t: [*run_args(w), "--param",
                                                f"recall_at=!!python/object/apply:os.system ['touch {t / 'pwned'}']"],
         "params.recall_at", "expected int"),
    _pre("param-without-equals", _std("--param", "recall_at"), "--param 'recall_at'", "key=value"),
    _pre("param-unknown-key", _std("--param", "bogus=1"), "--param bogus", "recall_at"),
    _pre("data-root-missing", _std("--param", "root=/nonexistent/x"), "/nonexistent/x", "does not exist"),
    # tasks, suites, task files
    _pre("task-unknown", _bare("--task", "nope", "--model", ORACLE), "Unknown task 'nope'"),
    _pre("suite-unknown", _bare("--suite", "nope", "--model", ORACLE), "Unknown suite 'nope'", "demo"),
    _pre("task-yaml-malformed", lambda w, t: ["run", "--task", _text_file("bad.yaml", "name: [x\n")(t), "--model",
                                              ORACLE], "bad.yaml", "invalid YAML"),
    _pre("task-yaml-python-tag", lambda w, t: ["run", "--task", _text_file(
        "evil.yaml", f"!!python/object/apply:os.system ['touch {t / 'pwned'}']\n")(t), "--model", ORACLE],
        "evil.yaml", "invalid YAML"),
    _pre("task-yaml-unknown-key", lambda w, t: ["run", "--task", _text_file("unk.yaml", BAD_TASK)(t), "--model",
                                                ORACLE], "unk.yaml", "unknown key(s) ['bogus']"),
    _pre("include-path-missing", lambda w, t: [*run_args(w), "--include-path", t / "nope"], "--include-path",
         "does not exist"),
    # models named wrongly
    _pre("no-model", _bare("--task", TASK), "--model is required"),
    _pre("model-prefix-unknown", _model("nope:x"), "Unknown model type 'nope'", "open_clip"),
    _pre("model-py-module-missing", _model("py:no_such_module:build"), "py:no_such_module:build",
         "cannot import module"),
    _pre("model-py-file-missing", _model("py:/nonexistent/m.py:build"), "/nonexistent/m.py", "not found"),
    _pre("open-clip-arch-unknown", _model("open_clip:ViT-Nope"), "Unknown open_clip architecture 'ViT-Nope'"),
    _pre("pretrained-missing", _model(TINY_OPEN_CLIP, "--pretrained", "/nonexistent/w.pt"), "/nonexistent/w.pt",
         "not found"),
    _pre("models-file-bad-line", lambda w, t: ["run", "--task", TASK, "--models", _text_file("m.txt", "a,b,c,d\n")(t)],
         "m.txt:1", "spec[,pretrained][,name]"),
    _pre("models-file-not-utf8", lambda w, t: ["run", "--task", TASK, "--models", _text_file("m.txt", b"\xff\xfe")(t)],
         "m.txt", "UTF-8"),
    _pre("predictions-missing", _bare("--task", TASK, "--predictions", "/nonexistent/p.json"), "--predictions",
         "does not exist"),
    _pre("cache-dir-is-a-file", lambda w, t: [*run_args(w), "--cache-dir", _text_file("file", "x")(t)], "--cache-dir",
         "is a file"),
    _pre("data-root-is-a-file", lambda w, t: [*run_args(w), "--data-root", _text_file("file", "x")(t)], "--data-root",
         "is a file"),
)


@pytest.mark.parametrize("case", PREFLIGHT)
def test_run_refuses_before_loading_a_model(small_world, tmp_path, case):
    args = case.make(small_world, tmp_path)
    if "-o" not in args:
        args += ["-o", tmp_path / "res"]
    t0 = time.perf_counter()
    r = invoke(*args)
    expect(r, case.code, *case.names)
    assert time.perf_counter() - t0 < 30  # refused up front, not after an evaluation
    assert not (tmp_path / "pwned").exists()
    assert not [p for p in (tmp_path / "res").rglob("*") if p.is_file()]  # nothing written, no identity bound


PREFLIGHT_HANDLED = table(
    # the issue's hang: k = 10^7 is answered at once (tie-aware recall is O(queries) for any k)
    Case("recall-at-ten-million", lambda w: ["--param", "recall_at=[1,10000000]"], 0, ("mean_R@10000000",)),
    Case("recall-at-duplicates", lambda w: ["--param", "recall_at=[5,1,5]"], 0, ("mean_R@5",)),
    # names that look like paths or carry control characters stay one folder inside -o
    Case("model-name-dotdot", lambda w: ["--model-name", "../../escape"], 0, ("escape",)),
    Case("model-name-absolute", lambda w: ["--model-name", "/etc"], 0, ("etc",)),
    Case("model-name-nul-and-newline", lambda w: ["--model-name", "a\x00b\nc"], 0, ("a-b-c",)),
    Case("shard-1-of-huge", lambda w: ["--shard", f"1/{10**20}"], 0, (TASK,)),
)


@pytest.mark.parametrize("case", PREFLIGHT_HANDLED)
def test_run_handles_odd_but_valid_options(small_world, tmp_path, case):
    out = tmp_path / "res"
    t0 = time.perf_counter()
    r = invoke(*run_args(small_world), "-o", out, "--limit", "8", *case.make(small_world))
    expect(r, 0)
    assert time.perf_counter() - t0 < 30
    (folder,) = [p for p in out.iterdir()]  # one results folder, directly inside -o
    res = json.loads((folder / f"{TASK}.json").read_text())
    assert case.names[0] in {folder.name, TASK, *res["metrics"]}  # the folder it went to, or the metric it gave
    assert all(v == 100.0 for v in res["metrics"].values())  # the oracle
    assert not debris(out) and len(collect([out]).entries) == 1


# == 3. datasets through `run` and `data verify`; archives ==============================================
#
# The readers' fault table (test_dataset_checks: duplicate ids and images, empty captions, paths leaving
# the data root, non-string fields, damaged archives, in every format) goes through `run`: refused with
# exit 2 before any model loads, -o left empty. The issue's Karpathy faults also go through `data verify`
# (which said OK). Then faults the table lacks: unreadable annotation files, images that are not images
# (decompression bombs, folders, FIFOs, /dev/zero), and archives: zip/tar path traversal, links, zip and
# gzip bombs. Nothing is ever written outside its folder.


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run_task(cfg: dict, tmp: Path, model: str = ORACLE, template: str | None = None):
    if template is None:
        tasks = dc._task(tmp / "tasks", "check-me", cfg)
    else:
        tasks = _wds_task(tmp / "tasks", cfg)
    return tasks, invoke("run", "-q", "--task", "check-me", "--include-path", tasks, "--model", model,
                         "-o", tmp / "res", "--batch-size", "2")


@pytest.mark.parametrize("case", dc.CASES)
def test_dataset_fault_refused_by_run_before_a_model_loads(tmp_path, own_cache, case):
    cfg = case.build(tmp_path / "data")
    _, r = _run_task(cfg, tmp_path, model="py:no_such_module:never_loaded")  # the model is never built
    expect(r, 2, *case.expected)
    assert not [p for p in (tmp_path / "res").rglob("*") if p.is_file()]


ISSUE_KARPATHY = [c for c in dc.CASES if c.id.startswith("karpathy-")]


@pytest.mark.parametrize("case", ISSUE_KARPATHY)
def test_issue_karpathy_fault_refused_by_data_verify(tmp_path, own_cache, case):
    cfg = case.build(tmp_path / "data")
    r = invoke("data", "verify", "check-me", "--include-path", dc._task(tmp_path / "tasks", "check-me", cfg))
    expect(r, 2, "dataset refused", *case.expected)
    assert "OK" not in r.output


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few bytes (decoding it would need gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _karpathy_file(text: bytes | str) -> Callable[[Path], dict]:
    def build(root: Path) -> dict:
        cfg = dc.karpathy(root)
        (root / "dataset_coco.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return cfg
    return build


def _karpathy_image(replace: Callable[[Path], object]) -> Callable[[Path], dict]:
    def build(root: Path) -> dict:
        cfg = dc.karpathy(root)
        image = root / "val2014" / "im1.jpg"
        image.unlink()
        replace(image)
        return cfg
    return build


def _wino_zip(*members: tuple[str, bytes]) -> Callable[[Path], dict]:
    """Winoground with images.zip (deflated) holding its images plus ``members``."""
    def build(root: Path) -> dict:
        cfg = dc.winoground(root)
        data = root / "data"
        images = sorted((data / "images").iterdir())
        with zipfile.ZipFile(data / "images.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for p in images:
                zf.write(p, f"images/{p.name}")
            for name, payload in members:
                zf.writestr(name, payload)
        shutil.rmtree(data / "images")
        return cfg
    return build


def _wino_jsonl_deep(root: Path) -> dict:
    cfg = dc.winoground(root)
    with (root / "data" / "examples.jsonl").open("a") as f:
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    return cfg


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    dc.Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _wds(*extra: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], gz: bool = False) -> Callable[[Path], dict]:
    """A CLIP_benchmark wds classification folder with one shard: two samples plus ``extra`` members."""
    def build(root: Path) -> dict:
        (root / "test").mkdir(parents=True)
        (root / "test" / "nshards.txt").write_text("1\n")
        (root / "classnames.txt").write_text("red\nblue\n")
        members = []
        for key, label in (("s0", b"0"), ("s1", b"1")):
            members += [(tarfile.TarInfo(f"{key}.png"), _png_bytes()), (tarfile.TarInfo(f"{key}.cls"), label)]
        members += [m if isinstance(m, tuple) else (m, b"") for m in extra]
        with tarfile.open(root / "test" / "0.tar", "w:gz" if gz else "w") as tar:
            for info, data in members:
                if info.isreg():
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        return {"format": "wds", "root": str(root), "split": "test"}
    return build


def _wds_task(folder: Path, cfg: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "check-me.yaml").write_text(
        "name: check-me\ntype: zeroshot_classification\nversion: 1\n"
        f"dataset: {{name: check-me, format: wds, root: \"{cfg['root']}\", split: test}}\n"
        "params: {templates: classname}\nmain_metric: top1\n")
    return folder


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _sized(name: str, size: int) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"\0" * size


@dataclass
class DataCase:
    id: str
    build: Callable[[Path], dict]
    run: int                 # exit code of `run`
    verify: int | None       # exit code of `data verify` (None: not checked, e.g. it does not decode images)
    names: tuple
    model: str = "py:no_such_module:never_loaded"
    wds: bool = False


BIG = 64 * 1024 * 1024 + 1  # one byte above the member caps of Winoground's zip and wds shards

DATASET_EXTRA = [
    # annotation files that are not what they claim
    DataCase("karpathy-json-nested-too-deep", _karpathy_file("[" * 100_000 + "]" * 100_000), 2, 2,
             ("dataset_coco.json", "nested too deeply")),
    DataCase("karpathy-json-is-a-list", _karpathy_file("[1, 2]"), 2, 1, ("dataset_coco.json", "found list")),
    DataCase("karpathy-json-empty-file", _karpathy_file(""), 2, 1, ("dataset_coco.json", "malformed JSON")),
    DataCase("karpathy-json-latin1", _karpathy_file(b'{"images": [{"filename": "caf\xe9"}]}'), 2, 1,
             ("dataset_coco.json", "not a UTF-8 text file")),
    DataCase("karpathy-json-no-images", _karpathy_file('{"imgs": []}'), 2, 1, ("dataset_coco.json", "['images']")),
    DataCase("karpathy-split-empty", lambda r: dc.karpathy(r, lambda d: [e.update(split="train") for e in d["images"]]),
             2, 1, ("dataset_coco.json", "no images in split 'test'")),
    DataCase("karpathy-id-nan", lambda r: (lambda cfg: ((r / "dataset_coco.json").write_text(
        (r / "dataset_coco.json").read_text().replace('"cocoid": 100,', '"cocoid": NaN,')), cfg)[1])(dc.karpathy(r)),
        2, 2, ("dataset_coco.json", "images[0].cocoid", "found float nan")),
    DataCase("winoground-jsonl-nested-too-deep", _wino_jsonl_deep, 2, 2, ("examples.jsonl", "line 3",
                                                                          "nested too deeply")),
    # images that are not images: refused without opening them (a FIFO or /dev/zero would never end)
    DataCase("karpathy-image-missing", _karpathy_image(lambda p: None), 2, 1, ("im1.jpg", "missing")),
    DataCase("karpathy-image-is-a-folder", _karpathy_image(lambda p: p.mkdir()), 2, 1, ("im1.jpg", "missing")),
    DataCase("karpathy-image-is-a-fifo", _karpathy_image(os.mkfifo), 2, 1, ("im1.jpg", "missing")),
    DataCase("karpathy-image-links-to-dev-zero", _karpathy_image(lambda p: p.symlink_to("/dev/zero")), 2, 1,
             ("im1.jpg", "missing")),
    # decoded only by `run` (verify checks files, not pixels): refused naming the image, after the model loads
    DataCase("karpathy-image-decompression-bomb", _karpathy_image(lambda p: p.write_bytes(_png_header(30000, 30000))),
             2, 0, ("im1.jpg", "DecompressionBombError"), model=TINY_OPEN_CLIP),
    DataCase("karpathy-image-is-html", _karpathy_image(lambda p: p.write_text("<html>not an image</html>")), 2, 0,
             ("im1.jpg", "not a readable image"), model=TINY_OPEN_CLIP),
    # zip path traversal and bombs (Winoground's images.zip)
    DataCase("zip-member-dotdot", _wino_zip(("../../escaped.png", b"x")), 2, 2, ("images.zip", "'../../escaped.png'")),
    DataCase("zip-member-absolute", _wino_zip(("/tmp/escaped.png", b"x")), 2, 2, ("images.zip", "'/tmp/escaped.png'")),
    DataCase("zip-member-backslashes", _wino_zip(("..\\..\\escaped.png", b"x")), 2, 2, ("images.zip", "escaped.png",
                                                                                          "'..' path")),
    DataCase("zip-two-members-one-name", _wino_zip(("other/ex_0_img_0.png", b"x")), 2, 2,
             ("images.zip", "'images/ex_0_img_0.png' and 'other/ex_0_img_0.png'")),
    DataCase("zip-bomb-member", _wino_zip(("images/bomb.png", b"\0" * BIG)), 2, 2,
             ("images.zip", "'images/bomb.png' is 67108865 bytes uncompressed")),
    # tar path traversal, links and gzip bombs (CLIP_benchmark wds shards)
    DataCase("tar-member-dotdot", _wds((tarfile.TarInfo("../escaped.cls"), b"0")), 2, 2, ("0.tar", "'../escaped.cls'"),
             wds=True),
    DataCase("tar-member-absolute", _wds((tarfile.TarInfo("/tmp/escaped.cls"), b"0")), 2, 2,
             ("0.tar", "'/tmp/escaped.cls'"), wds=True),
    DataCase("tar-member-symlink", _wds(_link("s2.png", "/etc/passwd")), 2, 2, ("0.tar", "'s2.png' is a link"),
             wds=True),
    DataCase("tar-member-hardlink", _wds(_link("s2.png", "/etc/passwd", tarfile.LNKTYPE)), 2, 2,
             ("0.tar", "'s2.png' is a link"), wds=True),
    DataCase("tar-member-device", _wds(_link("s2.png", "", tarfile.CHRTYPE)), 2, 2, ("0.tar", "special file"),
             wds=True),
    # shards are read in place, so a compressed one (a decompression bomb, or just gzip) is refused unread
    DataCase("tar-gzip-bomb-member", _wds(_sized("s2.png", BIG), gz=True), 2, 1, ("0.tar", "gzip-compressed shard"),
             wds=True),
    DataCase("tar-gzip-bomb-total", _wds(*[_sized(f"s{k}.png", 30 << 20) for k in range(2, 5)], gz=True), 2, 1,
             ("0.tar", "gzip-compressed shard"), wds=True),
]


@pytest.mark.parametrize("command", ["run", "verify"])
@pytest.mark.parametrize("case", DATASET_EXTRA, ids=[c.id for c in DATASET_EXTRA])
def test_hostile_dataset_file(tmp_path, own_cache, case, command):
    cfg = case.build(tmp_path / "data")
    if command == "run":
        tasks, r = _run_task(cfg, tmp_path, case.model, template="wds" if case.wds else None)
        expect(r, case.run, *case.names)
        assert not [p for p in (tmp_path / "res").rglob("*") if p.is_file()]  # no result, no name left bound
    else:
        if case.verify is None:
            return
        tasks = _wds_task(tmp_path / "tasks", cfg) if case.wds else dc._task(tmp_path / "tasks", "check-me", cfg)
        r = invoke("data", "verify", "check-me", "--include-path", tasks)
        expect(r, case.verify, *(case.names if case.verify else ()))
        assert ("OK" in r.output) == (case.verify == 0)
    # nothing escaped, nothing half-extracted
    assert not [p for p in tmp_path.rglob("escaped*")] and not Path("/tmp/escaped.png").exists()
    assert not debris(tmp_path)
    extracted = own_cache / "extracted"
    assert not extracted.exists() or not [p for p in extracted.rglob("*") if p.is_file()]


def test_zip_archive_above_its_total_cap_is_refused_before_extraction(tmp_path, own_cache, monkeypatch):
    """Winoground's images.zip above MAX_ARCHIVE_BYTES uncompressed (4 GiB; lowered here) is refused whole."""
    import sparc_eval.data.winoground as wino

    cfg = _wino_zip(*[(f"images/pad{k}.png", b"\0" * 5000) for k in range(3)])(tmp_path / "data")
    monkeypatch.setattr(wino, "MAX_ARCHIVE_BYTES", 10_000)
    _, r = _run_task(cfg, tmp_path)
    expect(r, 2, "images.zip", "members add up to more than 10000 bytes")
    assert not (own_cache / "winoground").exists() or not list((own_cache / "winoground").rglob("*.png"))


@pytest.mark.parametrize("member, why", [("../escaped.txt", "unsafe path"), ("/tmp/escaped.txt", "unsafe path"),
                                         ("link", "is a link"), ("C:/escaped.txt", "unsafe path")])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_download_archive_with_unsafe_member_is_refused_whole(tmp_path, kind, member, why):
    """`data download` extraction (sparc_eval.data.sources.extract): one unsafe member refuses the archive
    before anything is written (the command lives on another branch; the function is what it calls)."""
    from sparc_eval.data.sources import extract
    from sparc_eval.errors import DataIntegrityError

    archive = tmp_path / f"a.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("ok.txt", "fine")
            if member == "link":
                info = zipfile.ZipInfo("link")
                info.external_attr = (0o120777 << 16)
                zf.writestr(info, "/etc/passwd")
            else:
                zf.writestr(member, "x")
    else:
        with tarfile.open(archive, "w") as tar:
            for info, data in [(tarfile.TarInfo("ok.txt"), b"fine"),
                               (_link("link", "/etc/passwd"), b"") if member == "link"
                               else (tarfile.TarInfo(member), b"x")]:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    with pytest.raises(DataIntegrityError, match=why) as err:
        extract(archive, tmp_path / "dest")
    assert str(archive) in str(err.value) and err.value.exit_code == 2
    assert not [p for p in (tmp_path / "dest").rglob("*") if p.is_file()] and not debris(tmp_path)
    assert not Path("/tmp/escaped.txt").exists()


# == 4. model files and checkpoints =======================================================================
#
# Weights from strangers: a pickle that would run code (it touches a marker file) in every container
# torch reads (.pt/.pth zip archives, their data.pkl, legacy non-zip files, raw .bin pickles, a
# transformers pytorch_model.bin, a training_state.pt on --resume) is refused, and so are damaged files,
# files of another architecture, non-finite weights and config.json faults, each naming the file (and the
# tensor or field). The marker never appears; nothing is left in -o (the name is unbound again).

BUNDLED = Path(__file__).resolve().parent.parent / "checkpoints" / "shapes-clip-seed0"


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _eval_pickle(marker: Path) -> bytes:
    """A protocol-0 pickle calling builtins.eval (no class needed to build it)."""
    return f"cbuiltins\neval\n(V__import__('os').system('touch {marker}')\ntR.".encode()


@pytest.fixture(scope="module")
def tiny_states():
    from sparc_eval.models import load_model

    own = {k: v.clone() for k, v in load_model(TINY_OPEN_CLIP, seed=0).model.state_dict().items()}
    other = dict(load_model("open_clip:ViT-Small-16-224", seed=0).model.state_dict())
    return own, other


def _datapkl_replaced(path: Path, state: dict, marker: Path) -> None:
    """A real torch.save zip archive whose data.pkl is swapped for an exploit."""
    good = path.with_suffix(".good")
    torch.save(state, good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, pickle.dumps(_Exploit(marker), protocol=2) if info.filename.endswith("data.pkl")
                          else data)
    good.unlink()


def _safetensors(state: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def _torchscript(path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))


def _bad_offsets() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1_000_000], "data_offsets": [0, 4_000_000]}}).encode()
    return len(header).to_bytes(8, "little") + header + b"\0" * 16


def _filled(state: dict, key: str, value: float) -> dict:
    return {k: (torch.full_like(v, value) if k == key else v) for k, v in state.items()}


WEIGHT_FILES = table(
    # malicious pickles in every container
    Case("pickle-in-pt-archive", lambda p, s, o, m: torch.save({"state_dict": s, "x": _Exploit(m)}, p / "w.pt"), 2,
         ("w.pt", "refused to load")),
    Case("pickle-in-pth-archive", lambda p, s, o, m: torch.save({"state_dict": s, "x": _Exploit(m)}, p / "w.pth"), 2,
         ("w.pth", "refused to load")),
    Case("pickle-in-legacy-ckpt", lambda p, s, o, m: torch.save({"x": _Exploit(m)}, p / "w.ckpt",
                                                                  _use_new_zipfile_serialization=False), 2,
         ("w.ckpt", "refused to load")),
    Case("pickle-as-raw-bin", lambda p, s, o, m: (p / "w.bin").write_bytes(pickle.dumps(_Exploit(m), protocol=4)), 2,
         ("w.bin", "refused to load")),
    Case("pickle-builtins-eval", lambda p, s, o, m: (p / "w.pt").write_bytes(_eval_pickle(m)), 2, ("w.pt",
                                                                                                  "refused to load")),
    Case("pickle-in-zip-data-pkl", lambda p, s, o, m: _datapkl_replaced(p / "w.pt", s, m), 2, ("w.pt",
                                                                                               "refused to load")),
    Case("pickle-nested-in-state-dict", lambda p, s, o, m: torch.save({"state_dict": {**s, "visual.x": _Exploit(m)}},
                                                                      p / "w.pt"), 2, ("w.pt", "refused to load")),
    Case("pickle-named-safetensors", lambda p, s, o, m: (p / "w.safetensors").write_bytes(pickle.dumps(_Exploit(m))),
         2, ("w.safetensors", "not a readable safetensors file")),
    # damaged or foreign files
    Case("pt-truncated", lambda p, s, o, m: (torch.save(s, p / "w.pt"), (p / "w.pt").write_bytes(
        (p / "w.pt").read_bytes()[:5000])), 2, ("w.pt", "cannot read the checkpoint")),
    Case("pt-empty", lambda p, s, o, m: (p / "w.pt").write_bytes(b""), 2, ("w.pt", "the file is empty")),
    Case("pt-random-bytes", lambda p, s, o, m: (p / "w.pt").write_bytes(np.random.default_rng(0).bytes(4096)), 2,
         ("w.pt",)),
    Case("pt-holding-safetensors", lambda p, s, o, m: (p / "w.pt").write_bytes(_safetensors(s)), 2, ("w.pt",)),
    Case("pt-torchscript", lambda p, s, o, m: _torchscript(p / "w.pt"), 2, ("w.pt", "TorchScript archive")),
    Case("pt-no-tensors", lambda p, s, o, m: torch.save({"epoch": 3, "lr": 0.1}, p / "w.pt"), 2,
         ("w.pt", "no tensors found")),
    Case("safetensors-truncated", lambda p, s, o, m: (p / "w.safetensors").write_bytes(_safetensors(s)[:5000]), 2,
         ("w.safetensors", "not a readable safetensors file")),
    Case("safetensors-empty", lambda p, s, o, m: (p / "w.safetensors").write_bytes(b""), 2,
         ("w.safetensors", "header too small")),
    Case("safetensors-header-length-2^62", lambda p, s, o, m: (p / "w.safetensors").write_bytes(
        (2**62).to_bytes(8, "little") + b"{}"), 2, ("w.safetensors", "header too large")),
    Case("safetensors-offsets-past-the-end", lambda p, s, o, m: (p / "w.safetensors").write_bytes(_bad_offsets()), 2,
         ("w.safetensors", "not a readable safetensors file")),
    Case("weights-suffix-npz", lambda p, s, o, m: (p / "w.npz").write_bytes(b"x"), 2, ("w.npz", "'.npz'")),
    Case("weights-of-another-architecture", lambda p, s, o, m: torch.save(o, p / "w.pt"), 2,
         ("w.pt", "weights do not fit open_clip:ViT-Tiny-8-64", "different architecture")),
    Case("weights-missing-a-key", lambda p, s, o, m: torch.save({k: v for k, v in s.items() if k != "logit_scale"},
                                                                p / "w.pt"), 2, ("w.pt", "missing keys: logit_scale")),
    Case("weights-misshaped", lambda p, s, o, m: torch.save({**s, "logit_scale": torch.zeros(3)}, p / "w.pt"), 2,
         ("w.pt", "shape mismatches: logit_scale")),
    # non-finite weights: every embedding NaN, and NaN scores ranked as perfect recall (was exit 0, R@1 100)
    Case("weights-nan", lambda p, s, o, m: torch.save(_filled(s, "visual.proj", float("nan")), p / "w.pt"), 2,
         ("w.pt", "tensor 'visual.proj'", "non-finite")),
    Case("weights-inf-safetensors", lambda p, s, o, m: (p / "w.safetensors").write_bytes(
        _safetensors(_filled(s, "text_projection", float("inf")))), 2, ("w.safetensors", "'text_projection'",
                                                                         "non-finite")),
)


@pytest.mark.parametrize("case", WEIGHT_FILES)
def test_weights_file(small_world, tmp_path, own_cache, tiny_states, case):
    marker = tmp_path / "pwned"
    case.make(tmp_path, *tiny_states, marker)
    (weights,) = [p for p in tmp_path.iterdir() if p.is_file()]
    r = invoke("run", "-q", "--task", TASK, "--param", f"root={small_world}", "--model", TINY_OPEN_CLIP,
               "--pretrained", weights, "-o", tmp_path / "res", "--limit", "4")
    expect(r, case.code, *case.names)
    assert not marker.exists()
    assert not [p for p in (tmp_path / "res").rglob("*")]  # the name bound for this run is released


def _sparc_dir(root: Path, config: Callable[[dict], object] | str | bytes | None = None,
               weights: bytes | None = None) -> Path:
    """A copy of the bundled shapes-clip checkpoint (weights linked) with ``config`` applied to config.json."""
    ckpt = root / "ckpt"
    ckpt.mkdir()
    if weights is None:
        (ckpt / "model.safetensors").symlink_to(BUNDLED / "model.safetensors")
    else:
        (ckpt / "model.safetensors").write_bytes(weights)
    text = (BUNDLED / "config.json").read_text()
    if callable(config):
        data = json.loads(text)
        config(data)
        text = json.dumps(data)
    elif config is not None:
        text = config
    (ckpt / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return ckpt


def _pre_set(key: str, value) -> Callable[[dict], None]:
    return lambda d: d["preprocessing"].update({key: value})


def _bundled_state() -> dict:
    from safetensors.torch import load_file

    return load_file(str(BUNDLED / "model.safetensors"))


SPARC_CHECKPOINTS = table(
    # the issue: resolution -5 blamed an image file instead of the config
    Case("config-resolution-negative", lambda r: _sparc_dir(r, _pre_set("resolution", -5)), 2,
         ("config.json: preprocessing.resolution: -5",)),
    Case("config-resolution-text", lambda r: _sparc_dir(r, _pre_set("resolution", "64")), 2,
         ("config.json: preprocessing.resolution: '64'",)),
    Case("config-resolution-bool", lambda r: _sparc_dir(r, _pre_set("resolution", True)), 2,
         ("config.json: preprocessing.resolution: True",)),
    Case("config-interpolation-unknown", lambda r: _sparc_dir(r, _pre_set("interpolation", "lanczos9")), 2,
         ("config.json: preprocessing.interpolation: 'lanczos9'",)),
    Case("config-crop-unknown", lambda r: _sparc_dir(r, _pre_set("crop", "zoom")), 2,
         ("config.json: preprocessing.crop: 'zoom'",)),
    Case("config-mean-two-values", lambda r: _sparc_dir(r, _pre_set("mean", [0.5, 0.5])), 2,
         ("config.json: preprocessing.mean",)),
    Case("config-std-zero", lambda r: _sparc_dir(r, _pre_set("std", [0, 0, 0])), 2,
         ("config.json: preprocessing.std", "positive")),
    Case("config-std-nan", lambda r: _sparc_dir(r, lambda d: d["preprocessing"].update(std="@NAN@")), 2,
         ("config.json: preprocessing.std",)),
    Case("config-not-json", lambda r: _sparc_dir(r, "{not json"), 2, ("config.json", "cannot read the checkpoint config")),
    Case("config-not-ours", lambda r: _sparc_dir(r, lambda d: d.update(format="something-else")), 2,
         ("config.json", "not a sparc-eval pretraining checkpoint")),
    Case("config-version-from-the-future", lambda r: _sparc_dir(r, lambda d: d.update(version=99)), 2,
         ("config.json", "format version 99 is newer")),
    Case("config-arch-unknown", lambda r: _sparc_dir(r, lambda d: d["model"].update(arch="ViT-Nope")), 2,
         ("config.json", "ViT-Nope")),
    Case("config-nested-too-deep", lambda r: _sparc_dir(r, "[" * 100_000 + "]" * 100_000), 2,
         ("config.json", "nested too deeply")),
    Case("config-not-utf8", lambda r: _sparc_dir(r, b'{"format": "caf\xe9"}'), 2, ("config.json", "not UTF-8")),
    Case("config-missing", lambda r: (_sparc_dir(r), (r / "ckpt" / "config.json").unlink())[0], 2,
         ("no checkpoint here", "config.json")),
    Case("sparc-weights-truncated", lambda r: _sparc_dir(r, weights=(BUNDLED / "model.safetensors").read_bytes()[:9000]),
         2, ("model.safetensors", "not a readable safetensors file")),
    Case("sparc-weights-nan", lambda r: _sparc_dir(r, weights=_safetensors(_filled(_bundled_state(), "logit_scale",
                                                                                    float("nan")))), 2,
         ("model.safetensors", "'logit_scale'", "non-finite")),
    Case("sparc-weights-of-another-architecture", lambda r: _sparc_dir(
        r, lambda d: d["model"].update(arch="ViT-Small-16-224")), 2,
        ("model.safetensors", "weights do not fit", "different architecture")),
)


@pytest.mark.parametrize("case", SPARC_CHECKPOINTS)
def test_sparc_checkpoint(small_world, tmp_path, own_cache, case):
    ckpt = case.make(tmp_path)
    config = ckpt / "config.json"
    if config.is_file() and b"@NAN@" in config.read_bytes():
        config.write_bytes(config.read_bytes().replace(b'"@NAN@"', b"[NaN, 0.2, 0.2]"))
    r = invoke("run", "-q", "--task", TASK, "--param", f"root={small_world}", "--model", f"sparc:{ckpt}",
               "-o", tmp_path / "res", "--limit", "4")
    expect(r, case.code, *case.names)
    assert "im0" not in r.output and "image" not in r.output.split("Error:")[-1].split("config.json")[0]
    assert not [p for p in (tmp_path / "res").rglob("*")]


def test_pickle_in_training_state_is_refused_on_resume(small_world, tmp_path, own_cache):
    """`pretrain --resume CHECKPOINT` reads training_state.pt with weights_only: the exploit never runs."""
    marker = tmp_path / "pwned"
    ckpt = _sparc_dir(tmp_path)
    torch.save({"step": 1, "optimizer": {}, "config": {}, "x": _Exploit(marker)}, ckpt / "training_state.pt")
    config = tmp_path / "recipe.yaml"
    config.write_text(f"name: red\nseed: 0\noutput_dir: {tmp_path / 'run'}\nsteps: 4\nbatch_size: 2\ndevice: cpu\n"
                      f"model: {{arch: ViT-Tiny-8-64}}\nloss: {{name: clip}}\n"
                      f"data: {{format: shapes, root: {small_world}, splits: [train]}}\neval: {{every: 0}}\n")
    r = invoke("pretrain", "-q", "--config", config, "--resume", ckpt)
    expect(r, 2, "training_state.pt", "cannot read the training state")
    assert not marker.exists() and not (tmp_path / "run" / "checkpoint-1").exists()


def test_pickle_in_transformers_bin_is_refused(tmp_path, own_cache, hf_clip_dir, small_world):
    """`hf:DIR` whose pytorch_model.bin (no safetensors) carries an exploit: transformers loads .bin with
    weights_only; the adapter reports it naming the folder."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "hf"
    shutil.copytree(hf_clip_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save({"x": _Exploit(marker)}, folder / "pytorch_model.bin")
    r = invoke("run", "-q", "--task", TASK, "--param", f"root={small_world}", "--model", f"hf:{folder}",
               "-o", tmp_path / "res", "--limit", "4")
    expect(r, 2, str(folder))
    assert not marker.exists() and not [p for p in (tmp_path / "res").rglob("*")]


def test_nan_weights_in_a_transformers_folder_are_refused(tmp_path, own_cache, hf_clip_dir, small_world):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hf"
    shutil.copytree(hf_clip_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["logit_scale"] = torch.tensor(float("nan"))
    save_file(state, str(folder / "model.safetensors"))
    r = invoke("run", "-q", "--task", TASK, "--param", f"root={small_world}", "--model", f"hf:{folder}",
               "-o", tmp_path / "res", "--limit", "4")
    expect(r, 2, str(folder), "'logit_scale'", "non-finite")


MODEL_OUTPUTS = """
import torch
from sparc_eval.models.oracle import shapes_oracle


def _with(pretrained, seed, change):
    model = shapes_oracle(pretrained, seed)
    encode = model._encode_images
    model._encode_images = lambda images: change(encode(images))
    return model


def nan(pretrained=None, seed=0):
    return _with(pretrained, seed, lambda e: torch.full_like(e, float("nan")))


def _one(e, value):
    e = e.clone()
    e[-1, -1] = value
    return e


def one_inf(pretrained=None, seed=0):
    return _with(pretrained, seed, lambda e: _one(e, float("inf")))


def one_minus_inf(pretrained=None, seed=0):
    return _with(pretrained, seed, lambda e: _one(e, float("-inf")))


def one_row(pretrained=None, seed=0):
    return _with(pretrained, seed, lambda e: e[:1])


def flat(pretrained=None, seed=0):
    return _with(pretrained, seed, lambda e: e.reshape(-1))
"""


@pytest.mark.parametrize("fn, names", [("nan", ("image embeddings hold NaN or inf",)),
                                       ("one_inf", ("image embeddings hold NaN or inf (1 of",)),
                                       ("one_minus_inf", ("image embeddings hold NaN or inf (1 of",)),
                                       ("one_row", ("came back as (1,", "one per input")),
                                       ("flat", ("expected a tensor of 2 dimensions",))])
def test_model_returning_bad_embeddings(small_world, tmp_path, own_cache, fn, names):
    """A model whose embeddings are NaN (was: mean_R@1 100.00, exit 0) or hold a single infinity of either
    sign, or not one row per input (was: a KeyError traceback in the engine), is refused naming the model."""
    src = tmp_path / "outputs.py"
    src.write_text(MODEL_OUTPUTS)
    r = invoke(*run_args(small_world, f"py:{src}:{fn}", "-o", tmp_path / "res"))
    expect(r, 2, f"py:{src}:{fn}", *names)
    assert not [p for p in (tmp_path / "res").rglob("*")]


# == 5. the embedding cache ==============================================================================
#
# A damaged cache must never change a number: a chunk that fails its checksum (flipped byte: mean_R@1
# 49.95 instead of 61.63 in the issue; truncated: SafetensorError on every later run) is discarded with
# a warning naming it and recomputed; an edited meta.json is rebuilt from the verified chunks. Each run
# must give the clean run's metrics and per-sample file byte for byte, and `cache verify` passes after.


@pytest.fixture(scope="module")
def cache_clean(small_world, tmp_path_factory) -> tuple[Path, dict, bytes]:
    """(a clean cache folder, the clean run's result, its samples bytes)."""
    root = tmp_path_factory.mktemp("cache-clean")
    r = invoke(*run_args(small_world, PERMUTED, "--model-name", "m", "-o", root / "r", "--cache-dir",
                         root / "cache", "--batch-size", "8"))
    assert r.exit_code == 0, r.output
    return root / "cache", json.loads((root / "r" / "m" / f"{TASK}.json").read_text()), \
        (root / "r" / "m" / f"{TASK}.samples.jsonl").read_bytes()


def _entry(cache: Path, what: str) -> Path:
    (meta,) = [m for m in (cache / "embeddings").rglob("meta.json") if json.loads(m.read_text())["what"] == what]
    return meta.parent


def _chunk(cache: Path, what: str = "image") -> Path:
    return sorted(_entry(cache, what).glob("chunk-*.safetensors"))[0]


def _sidecar(cache: Path) -> Path:
    return Path(f"{_chunk(cache)}.sum")


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 64] ^= 0x40  # an exponent bit of a float near the end: same size, another number
    path.write_bytes(bytes(data))


def _replace(path: Path, by: Callable[[Path], object]) -> None:
    path.unlink()
    by(path)


def _meta_set(what: str, **changes) -> Callable[[Path], None]:
    def damage(cache: Path) -> None:
        meta = _entry(cache, what) / "meta.json"
        meta.write_text(json.dumps({**json.loads(meta.read_text()), **changes}))
    return damage


@dataclass
class CacheCase:
    id: str
    damage: Callable[[Path], object]
    warned: tuple          # what the warning names ("" parts: no warning expected)
    images_encoded: int    # forward passes the repair costs (40: the image entry recomputed)


CACHE_DAMAGE = [
    CacheCase("chunk-byte-flipped", lambda c: _flip(_chunk(c)), ("chunk-000000000-000000040.safetensors", "sha256"), 40),
    CacheCase("chunk-truncated", lambda c: os.truncate(_chunk(c), _chunk(c).stat().st_size // 2),
              ("chunk-000000000-000000040.safetensors", "truncated"), 40),
    CacheCase("chunk-zero-bytes", lambda c: _chunk(c).write_bytes(b""), ("chunk-000000000-000000040", "0 bytes"), 40),
    CacheCase("chunk-deleted", lambda c: _chunk(c).unlink(), (), 40),
    CacheCase("chunk-of-another-entry", lambda c: (shutil.copy(_chunk(c, "text"), _chunk(c)),
                                                   shutil.copy(f"{_chunk(c, 'text')}.sum", f"{_chunk(c)}.sum")),
              ("chunk-000000000-000000040", "rows, its name says 40"), 40),
    CacheCase("chunk-links-to-etc-passwd", lambda c: _replace(_chunk(c), lambda p: p.symlink_to("/etc/passwd")),
              ("chunk-000000000-000000040",), 40),
    CacheCase("sidecar-deleted", lambda c: _sidecar(c).unlink(), ("no checksum sidecar",), 40),
    CacheCase("sidecar-not-json", lambda c: _sidecar(c).write_text("{not json"), ("unreadable checksum sidecar",), 40),
    CacheCase("sidecar-sha256-edited", lambda c: _sidecar(c).write_text(json.dumps(
        {**json.loads(_sidecar(c).read_text()), "sha256": "0" * 64})), ("chunk-000000000-000000040", "sha256"), 40),
    CacheCase("entries-of-an-earlier-version", lambda c: [p.unlink() for p in (c / "embeddings").rglob("*.sum")],
              ("no checksum sidecar",), 40),
    CacheCase("meta-edited", _meta_set("text", n=39), ("meta.json", "its check does not match"), 0),
    CacheCase("meta-not-json", lambda c: (_entry(c, "image") / "meta.json").write_bytes(b"\x00\x01"),
              ("meta.json", "unreadable"), 0),
    CacheCase("meta-deleted", lambda c: (_entry(c, "image") / "meta.json").unlink(), (), 0),
    CacheCase("temp-file-of-a-killed-writer", lambda c: (_entry(c, "image") / ".chunk-x.safetensors.1.tmp").write_bytes(
        b"half"), (), 0),
    CacheCase("meta-nested-too-deep", lambda c: (_entry(c, "image") / "meta.json").write_text(
        "[" * 100_000 + "]" * 100_000), ("meta.json",), 0),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CACHE_DAMAGE])
def test_damaged_cache_changes_no_number(small_world, tmp_path, cache_clean, case):
    clean, reference, samples = cache_clean
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache, symlinks=True)
    case.damage(cache)
    r = invoke(*run_args(small_world, PERMUTED, "--model-name", "m", "-o", tmp_path / "r", "--cache-dir", cache,
                         "--batch-size", "8", quiet=False))
    expect(r, 0)
    warnings = [line for line in r.output.splitlines() if "warning" in line]
    if case.warned:
        assert warnings and all(flat(n) in flat(" ".join(warnings)) for n in case.warned), r.output
        assert "recomputed" in warnings[0] or "rebuilt" in warnings[0]
    else:
        assert not warnings, r.output
    result = json.loads((tmp_path / "r" / "m" / f"{TASK}.json").read_text())
    assert result["metrics"] == reference["metrics"]
    assert (tmp_path / "r" / "m" / f"{TASK}.samples.jsonl").read_bytes() == samples
    assert result["provenance"]["engine"]["images_encoded"] == case.images_encoded
    verify = invoke("cache", "verify", "--cache-dir", cache)
    expect(verify, 0, "0 bad")
    assert not [d for d in debris(tmp_path / "r", cache) if ".chunk-x." not in d]


def test_a_folder_in_place_of_a_chunk_is_a_clear_error(small_world, tmp_path, cache_clean):
    clean, _, _ = cache_clean
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    chunk = _chunk(cache)
    _replace(chunk, lambda p: p.mkdir())
    r = invoke(*run_args(small_world, PERMUTED, "--model-name", "m", "-o", tmp_path / "r", "--cache-dir", cache,
                         "--batch-size", "8"))
    expect(r, 2, chunk.name, "Is a directory")
    assert not (tmp_path / "r" / "m" / f"{TASK}.json").exists() and not debris(tmp_path / "r")


def test_cache_verify_names_the_bad_chunk_and_fix_removes_it(small_world, tmp_path, cache_clean):
    clean, reference, _ = cache_clean
    cache = tmp_path / "cache"
    shutil.copytree(clean, cache)
    chunk = _chunk(cache)
    _flip(chunk)
    expect(invoke("cache", "verify", "--cache-dir", cache), 1, chunk, "sha256", "1 bad")
    expect(invoke("cache", "verify", "--cache-dir", cache, "--fix"), 0, f"removed {chunk}")
    assert not chunk.exists()
    expect(invoke("cache", "verify", "--cache-dir", cache), 0, "0 bad")
    r = invoke(*run_args(small_world, PERMUTED, "--model-name", "m", "-o", tmp_path / "r", "--cache-dir", cache,
                         "--batch-size", "8"))
    expect(r, 0)
    assert json.loads((tmp_path / "r" / "m" / f"{TASK}.json").read_text())["metrics"] == reference["metrics"]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> tuple[list[Path], list[str]]:
    """Two open_clip weight files (seeds 1 and 2) and their true sha256."""
    import hashlib

    from sparc_eval.models import load_model

    folder = tmp_path_factory.mktemp("two-checkpoints")
    weights = []
    for seed in (1, 2):
        torch.save(load_model(TINY_OPEN_CLIP, seed=seed).model.state_dict(), folder / f"w{seed}.pt")
        weights.append(folder / f"w{seed}.pt")
    return weights, [hashlib.sha256(w.read_bytes()).hexdigest() for w in weights]


@pytest.mark.parametrize("poison", ["another-checkpoints-entry", "digest-edited", "not-json"])
def test_poisoned_file_hash_memo_never_reaches_provenance(small_world, tmp_path, own_cache, two_checkpoints, poison):
    """The issue: a memo entry giving another checkpoint's digest put that weights_sha256 in provenance."""
    from sparc_eval.fileio import sha256_file

    weights, truth = two_checkpoints
    assert [sha256_file(w) for w in weights] == truth
    memo = {json.loads(p.read_text())["sha256"]: p for p in (own_cache / "file-hashes").iterdir()}
    mine, other = memo[truth[0]], memo[truth[1]]
    mine.write_text({"another-checkpoints-entry": other.read_text(),
                     "digest-edited": json.dumps({**json.loads(mine.read_text()), "sha256": truth[1]}),
                     "not-json": truth[1] + "\n"}[poison])
    r = invoke("run", "-q", "--task", TASK, "--param", f"root={small_world}", "--model", TINY_OPEN_CLIP,
               "--pretrained", weights[0], "--model-name", "w1", "-o", tmp_path / "r", "--limit", "4")
    expect(r, 0)
    result = json.loads((tmp_path / "r" / "w1" / f"{TASK}.json").read_text())
    assert result["model"]["weights_sha256"] == truth[0]
    assert json.loads(mine.read_text())["sha256"] == truth[0]  # the entry was recomputed and rewritten


# == 6. injection into every leaderboard format ===========================================================
#
# Model names, task names and titles come from files anyone can write. Each hostile string is rendered in
# every format and the output must have exactly the structure of the same board with a plain string:
# the same HTML tags and attributes, Markdown table cells, LaTeX control words and special characters,
# CSV rows and columns; no CSV text cell a spreadsheet would run as a formula.

HOSTILE = {
    "html-script": "<script>alert(1)</script>",
    "html-attribute-breakout": "\"><img src=x onerror=alert(1)>",
    "html-comment-and-cdata": "<!-- x --><![CDATA[y]]>",
    "html-entities": "&lt;b&gt; &amp; &#x3C;",
    "html-closing-tags": "</td></tr></table><h1>x",
    "csv-formula-equals": "=HYPERLINK(\"http://evil\",\"x\")",
    "csv-formula-plus": "+1+cmd|' /C calc'!A0",
    "csv-formula-minus": "-2+3",
    "csv-formula-at": "@SUM(1+1)",
    "csv-formula-tab": "\t=1+1",
    "csv-quotes-commas": "a,\"b\",,c",
    "latex-input": "\\input{/etc/passwd}",
    "latex-specials": "$x^2$ & 100% #1 _a ~b {c}",
    "latex-row-break-bracket": "] \\\\ [evil",
    "markdown-pipes": "a | b || c",
    "markdown-link": "[click](javascript:alert(1))",
    "markdown-emphasis-code": "**bold** _it_ `code` ~~s~~",
    "line-breaks": "line1\nline2\r\nline3",
    "unicode-bidi-override": "abc\u202edcba",
}
PLAIN = "plainname"
FORMATS = ["md", "csv", "tex", "html"]


def _toy_results(root: Path, model: str, task: str = "toy-task") -> None:
    aggs = {"top1": {"kind": "mean", "field": "hit", "scale": 100}}
    for name, n_right in ((model, 30), ("zz-other", 20)):
        records = [{"cluster": i, "id": f"img{i}", "hit": int(i < n_right)} for i in range(40)]
        metrics = {k: float(v[0]) for k, v in ClusterSums(records, aggs).compute().items()}
        result = {"schema": "sparc-eval/result/v2",
                  "task": {"name": task, "type": "t", "version": 1, "config_sha256": "c", "groups": []},
                  "model": {"spec": "py:x", "pretrained": None, "name": name, "weights_sha256": None},
                  "dataset": {"fingerprint": "fp", "n_total": 40, "n_used": 40}, "seed": 0, "metrics": metrics,
                  "main_metric": "top1", "intervals": intervals(records, aggs), "aggregations": aggs}
        write_result(result_path(root, name, "toy-task"), result, records)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(k for k, _ in attrs))))

    def handle_endtag(self, tag):
        self.tags.append(("/" + tag,))

    def handle_comment(self, data):
        self.tags.append(("<!--",))

    def handle_decl(self, decl):
        self.tags.append(("<!", decl.split()[0].lower()))

    def unknown_decl(self, data):
        self.tags.append(("<![",))

    def handle_data(self, data):
        self.text.append(data)


_LATEX_ESCAPES = re.compile(r"\\(textbackslash|textasciitilde|textasciicircum|textless|textgreater|textbar)\{\}"
                            r"|\\[&%$#_{}]|\{\[\}|\{\]\}")
_MD_ESCAPES = re.compile(r"\\[\\`*_\[\]|~#]|&lt;|&gt;|&amp;")


def _signature(text: str, fmt: str):
    """The structure of a rendered board with user text taken out: what must not change with the text."""
    if fmt == "html":
        parser = _Tags()
        parser.feed(text)
        return parser.tags
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        return [len(r) for r in rows]
    if fmt == "md":
        return [re.findall(r"[|<>*_`\[\]~#]", _MD_ESCAPES.sub("", line)) for line in text.split("\n")]
    return [re.findall(r"\\[A-Za-z]+|\\\\|[&%$#_^~{}\[\]]", _LATEX_ESCAPES.sub("", line)) for line in text.split("\n")]


def _board(tmp: Path, name: str, where: str, fmt: str) -> str:
    root = tmp / f"results-{abs(hash(name))}"
    title = []
    if where == "model":
        _toy_results(root, name)
    elif where == "task":
        _toy_results(root, "model-a")
        for p in root.rglob("toy-task.json"):
            data = json.loads(p.read_text())
            data["task"]["name"] = name
            p.write_text(json.dumps(data))
    else:
        _toy_results(root, "model-a")
        title = ["--title", name]
    out = tmp / f"board-{abs(hash(name))}.{fmt}"
    r = invoke("leaderboard", root, "-o", out, *title)
    expect(r, 0)
    return out.read_bytes().decode("utf-8")


def _report(tmp: Path, name: str, kind: str) -> str:
    """The Markdown summary or JUnit XML of `check`, or the Markdown of `compare`, with model ``name``."""
    root = tmp / f"results-{abs(hash(name))}"
    _toy_results(root, name)
    out = tmp / f"{kind}-{abs(hash(name))}.{'xml' if kind == 'check-junit' else 'md'}"
    if kind == "compare-md":
        r = invoke("compare", result_path(root, name, "toy-task").parent, root / "zz-other", "--markdown", out)
    else:
        baseline = tmp / f"baseline-{abs(hash(name))}.json"
        expect(invoke("baseline", "save", root, "-o", baseline), 0)
        r = invoke("check", root, "--baseline", baseline, "--" + ("junit" if kind == "check-junit" else "markdown"), out)
    expect(r, 0)
    return out.read_bytes().decode("utf-8")


def _xml_signature(text: str) -> list:
    import xml.etree.ElementTree as ET

    return [(e.tag, tuple(sorted(e.attrib))) for e in ET.fromstring(text).iter()]


_PLAIN: dict = {}


def _rendered(tmp: Path, name: str, where: str, fmt: str) -> str:
    if fmt in REPORTS:
        return _report(tmp, name, fmt)
    return _board(tmp, name, where, fmt)


def _plain(tmp_path_factory, where: str, fmt: str) -> str:
    """The same output with a plain name (rendered once per module)."""
    if (where, fmt) not in _PLAIN:
        _PLAIN[where, fmt] = _rendered(tmp_path_factory.mktemp("plain"), PLAIN, where, fmt)
    return _PLAIN[where, fmt]


REPORTS = ["check-md", "check-junit", "compare-md"]
INJECTION = [pytest.param("model", key, fmt, id=f"model-{key}-{fmt}") for key in HOSTILE for fmt in FORMATS + REPORTS
             ] + [pytest.param(where, key, fmt, id=f"{where}-{key}-{fmt}") for where in ("task", "title")
                  for key in ("html-script", "latex-input", "markdown-pipes") for fmt in FORMATS]


@pytest.mark.parametrize("where, key, fmt", INJECTION)
def test_user_text_cannot_change_the_board(tmp_path, tmp_path_factory, where, key, fmt):
    hostile = HOSTILE[key]
    text = _rendered(tmp_path, hostile, where, fmt)
    plain = _plain(tmp_path_factory, where, fmt)
    if fmt == "check-junit":
        assert _xml_signature(text) == _xml_signature(plain), text
        import xml.etree.ElementTree as ET

        shown = [v for e in ET.fromstring(text).iter() for v in (*e.attrib.values(), e.text or "")]
        assert any(flat(hostile) in flat(v) for v in shown)
        return
    sig = "md" if fmt in REPORTS else fmt
    assert _signature(text, sig) == _signature(plain, sig), text
    if fmt == "csv":
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        for cell in cells:
            try:
                float(cell)
            except ValueError:
                assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), cell
        if where == "model":
            assert hostile in cells or "'" + hostile in cells
    if fmt == "html":
        parser = _Tags()
        parser.feed(text)
        assert flat(hostile) in flat(" ".join(parser.text))  # shown as text, whole
    if fmt == "tex":
        assert "\\input" not in _LATEX_ESCAPES.sub("", text)


# == 7. the process boundary: kill -9 and resume, concurrent runs ========================================
#
# Real processes, started when the module starts (they run beside the in-process cases) and checked by the
# last tests of the module:
# - a run killed with SIGKILL in the middle of extraction (its model stops in a known batch and says so),
#   then resumed in-process: it reads the finished chunk, computes the rest, and equals a clean run;
# - two runs of different models under one --model-name at once: exactly one refused (exit 2, naming the
#   folder), the other's result intact; no partial file;
# - two runs of the same model under one name at once: both succeed, one sound result.

HANG_MODEL = '''
"""The permuted shapes oracle; with REDTEAM_HANG_AT=N it stops for good in its N-th image batch, after
creating REDTEAM_MARKER (so a test can SIGKILL it at a known point)."""
import os
import time

from sparc_eval.models.oracle import shapes_oracle_permuted


def build(pretrained=None, seed=0):
    model = shapes_oracle_permuted(pretrained, seed)
    hang_at = int(os.environ.get("REDTEAM_HANG_AT", "0"))
    if hang_at:
        encode, calls = model._encode_images, [0]

        def hanging(images):
            calls[0] += 1
            if calls[0] == hang_at:
                open(os.environ["REDTEAM_MARKER"], "w").close()
                time.sleep(3600)
            return encode(images)

        model._encode_images = hanging
    return model
'''
HANG_AT = 34  # batch size 1, 32 batches per chunk: chunk [0, 32) is on disk, the run stops inside [32, 40)


@dataclass
class Processes:
    root: Path
    hang_model: str
    procs: dict
    outputs: dict
    killed_with: list  # files of the killed run's cache and results folder when it was killed

    def wait(self, name: str) -> tuple[int, str]:
        if name not in self.outputs:
            out, err = self.procs[name].communicate(timeout=240)
            self.outputs[name] = (self.procs[name].returncode, out + err)
        return self.outputs[name]


def _process_env(root: Path) -> dict:
    here = str(Path(sparc_eval.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", SPARC_EVAL_CACHE=str(root / "home"))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module", autouse=True)
def processes(request, small_world, tmp_path_factory):
    """Start the real processes at once when any process-boundary test is selected; a watcher thread kills
    the victim (SIGKILL) as soon as it reports that it stopped in its known batch."""
    if not any("::test_process_" in item.nodeid and item.path == request.path for item in request.session.items):
        yield None
        return
    root = tmp_path_factory.mktemp("processes")
    (root / "hang.py").write_text(HANG_MODEL)
    hang = f"py:{root / 'hang.py'}:build"
    env = _process_env(root)

    def cmd(model, name, out, cache, *extra):
        return [sys.executable, "-m", "sparc_eval", *run_args(small_world, model, "--model-name", name, "-o", out,
                                                               "--cache-dir", cache, "--num-workers", "0", *extra)]
    specs = {
        "victim": (cmd(hang, "m", root / "kill", root / "kill-cache", "--batch-size", "1"),
                   dict(env, REDTEAM_HANG_AT=str(HANG_AT), REDTEAM_MARKER=str(root / "stopped"))),
        "different-oracle": (cmd(ORACLE, "shared", root / "diff", root / "diff-cache"), env),
        "different-permuted": (cmd(hang, "shared", root / "diff", root / "diff-cache"), env),
        "same-1": (cmd(ORACLE, "same", root / "same", root / "same-cache"), env),
        "same-2": (cmd(ORACLE, "same", root / "same", root / "same-cache"), env),
    }
    procs = {k: subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (c, e) in specs.items()}
    state = Processes(root, hang, procs, {}, [])

    def watch():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and procs["victim"].poll() is None:
            if (root / "stopped").exists():
                state.killed_with.extend(sorted(str(p.relative_to(root)) for p in root.glob("kill*/**/*")
                                                if p.is_file()))
                procs["victim"].send_signal(signal.SIGKILL)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield state
    watcher.join(timeout=1)
    for p in procs.values():  # only the processes this fixture started
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_process_kill_9_mid_run_then_resume_loses_nothing(processes, small_world, tmp_path):
    code, output = processes.wait("victim")
    assert code == -signal.SIGKILL, output
    root = processes.root
    chunk_files = [f for f in processes.killed_with if "/embeddings/" in f]
    assert [Path(f).name for f in chunk_files] == ["chunk-000000000-000000032.safetensors",
                                                   "chunk-000000000-000000032.safetensors.sum"], chunk_files
    assert [f for f in processes.killed_with if f.startswith("kill/")] == ["kill/m/.identity.json"]
    assert not debris(root / "kill", root / "kill-cache")
    # resume: same model, same folder, same cache (in-process; the model no longer stops)
    r = invoke(*run_args(small_world, processes.hang_model, "--model-name", "m", "-o", root / "kill", "--cache-dir",
                         root / "kill-cache", "--batch-size", "1", "--num-workers", "0"))
    expect(r, 0)
    resumed = json.loads((root / "kill" / "m" / f"{TASK}.json").read_text())
    engine = resumed["provenance"]["engine"]
    assert engine["images_cached"] == 32 and engine["images_encoded"] == 8  # the killed run's chunk was kept
    # a clean run of the same model elsewhere gives the same numbers, byte for byte
    r = invoke(*run_args(small_world, processes.hang_model, "--model-name", "m", "-o", tmp_path / "clean",
                         "--cache-dir", tmp_path / "cache", "--batch-size", "8"))
    expect(r, 0)
    clean = json.loads((tmp_path / "clean" / "m" / f"{TASK}.json").read_text())
    assert resumed["metrics"] == clean["metrics"] and resumed["intervals"] == clean["intervals"]
    assert (root / "kill" / "m" / f"{TASK}.samples.jsonl").read_bytes() == \
        (tmp_path / "clean" / "m" / f"{TASK}.samples.jsonl").read_bytes()
    assert not debris(root / "kill", root / "kill-cache") and len(collect([root / "kill"]).entries) == 1


def test_process_concurrent_runs_of_two_models_under_one_name(processes):
    """The issue: both exited 0 and one result silently replaced the other."""
    runs = {k: processes.wait(k) for k in ("different-oracle", "different-permuted")}
    codes = sorted(code for code, _ in runs.values())
    assert codes == [0, 2], runs
    (winner,) = [k for k, (code, _) in runs.items() if code == 0]
    (loser,) = [k for k, (code, _) in runs.items() if code == 2]
    folder = processes.root / "diff" / "shared"
    message = flat(runs[loser][1])
    assert str(folder) in message and "holds the result of another model" in message and "--model-name" in message
    assert "Traceback" not in runs[loser][1]
    assert sorted(p.name for p in folder.iterdir()) == [".identity.json", f"{TASK}.json", f"{TASK}.samples.jsonl"]
    (entry,) = collect([processes.root / "diff"]).entries  # the winner's result, intact (checked against its samples)
    spec = ORACLE if winner == "different-oracle" else processes.hang_model
    assert entry.record.model.spec == spec
    assert json.loads((folder / ".identity.json").read_text())["spec"] == spec
    assert not debris(processes.root / "diff", processes.root / "diff-cache")


def test_process_concurrent_runs_of_the_same_model_both_succeed(processes):
    runs = {k: processes.wait(k) for k in ("same-1", "same-2")}
    assert [code for code, _ in runs.values()] == [0, 0], runs
    (entry,) = collect([processes.root / "same"]).entries
    assert entry.value() == 100.0 and entry.record.model.spec == ORACLE
    assert not debris(processes.root / "same", processes.root / "same-cache")


# == 8. FIFOs where a file is expected ===================================================================
#
# A named pipe in place of an input file blocks whoever opens it until a writer comes: a hang. Each
# command must refuse it (or skip it) without opening it. A command that opens it is released by the test
# (it opens the FIFO for writing), so a hang shows as a failure here, not as a stuck suite.


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _results_with_fifo(tmp: Path):
    root = tmp / "r"
    _toy_results(root, "m")
    return [_fifo(root / "m" / "other.json")], ["leaderboard", root]


def _check_with(option: str, tmp: Path):
    root = tmp / "r"
    _toy_results(root, "m")
    baseline = tmp / "baseline.json"
    expect(invoke("baseline", "save", root, "-o", baseline), 0)
    fifo = _fifo(tmp / ("pipe.yaml" if option == "--tolerances" else "pipe.json"))
    return [fifo], ["check", root, "--baseline", fifo if option == "--baseline" else baseline,
                    *([option, fifo] if option != "--baseline" else [])]


def _dataset_fifo(build: Callable[[Path], dict], rel: str, model: str = "py:no_such_module:never_loaded"):
    def setup(tmp: Path):
        cfg = build(tmp / "data")
        target = tmp / "data" / rel
        target.unlink()
        os.mkfifo(target)
        tasks = dc._task(tmp / "tasks", "check-me", cfg)
        return [target], ["run", "-q", "--task", "check-me", "--include-path", tasks, "--model", model,
                          "-o", tmp / "res"]
    return setup


def _run_with(option: str, name: str, task: str = TASK, model: str | None = ORACLE):
    def setup(tmp: Path, world: Path):
        fifo = _fifo(tmp / name)
        return [fifo], ["run", "-q", "--task", task, "--param", f"root={world}", *(["--model", model] if model else []),
                        option, fifo, "-o", tmp / "res"]
    return setup


FIFO_INPUTS = table(
    Case("result-json", _results_with_fifo, 0, ("skipped", "other.json")),
    Case("check-baseline", lambda t: _check_with("--baseline", t), 2, ("pipe.json", "not a regular file")),
    Case("check-tolerances", lambda t: _check_with("--tolerances", t), 2, ("pipe.yaml", "not a regular file")),
    Case("run-models-file", _run_with("--models", "models.txt", model=None), 2, ("models.txt", "not a regular file")),
    Case("run-predictions", _run_with("--predictions", "captions.json", task="shapes-captions", model=None), 2,
         ("captions.json", "not a regular file")),
    Case("run-pretrained", _run_with("--pretrained", "w.pt", model=TINY_OPEN_CLIP), 2, ("w.pt", "not found")),
    Case("karpathy-annotation", _dataset_fifo(dc.karpathy, "dataset_coco.json"), 2, ("dataset_coco.json", "missing")),
    Case("csv-captions", _dataset_fifo(dc.csv_retrieval, "captions.csv"), 2, ("captions.csv", "missing")),
    Case("winoground-examples", _dataset_fifo(dc.winoground, "data/examples.jsonl"), 2, ("examples.jsonl",)),
    Case("karpathy-image", _dataset_fifo(dc.karpathy, "val2014/im0.jpg"), 2, ("im0.jpg", "missing")),
)


@pytest.mark.parametrize("case", FIFO_INPUTS)
def test_fifo_in_place_of_a_file(tmp_path, own_cache, small_world, case):
    fifos, args = case.make(tmp_path, small_world) if case.id.startswith("run-") else case.make(tmp_path)
    r, opened = invoke_unblocking(fifos, *args)
    assert not opened, f"{case.id}: opened the FIFO and blocked (a hang); released by the test: {r.output[-300:]}"
    expect(r, case.code, *case.names)
    assert not [p for p in (tmp_path / "res").rglob("*") if p.is_file()]
