"""Logs a person reads: a run with stderr to a file gets one timestamped line when each phase starts and one
when it ends (no carriage returns), each task's total time and a per-task time table; ``--log-file`` gets the
same plain form; on a terminal the phases are live bars that leave one line each."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparc_eval import progress

REPO = Path(__file__).resolve().parent.parent
STAMP = r"\d\d:\d\d:\d\d"
TASKS = ("shapes-retrieval", "shapes-linear-probe", "shapes-zeroshot-seg")
# every named phase these three tasks go through
EXPECTED = {"shapes-retrieval": {"dataset", "model load", "scoring", "images", "texts", "bootstrap", "write"},
            "shapes-linear-probe": {"dataset", "scoring", "images", "probe sweep", "bootstrap", "write"},
            "shapes-zeroshot-seg": {"dataset", "scoring", "texts", "patches", "bootstrap", "write"}}


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """The bundled SPARC checkpoint on three demo tasks (first 40 images), stderr to a file."""
    tmp = tmp_path_factory.mktemp("logs")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "SPARC_EVAL_CACHE": str(tmp / "cache")}
    env.pop("TQDM_DISABLE", None)
    cmd = [sys.executable, "-m", "sparc_eval", "run", "--model", "sparc:checkpoints/shapes-sparc-seed0", "--limit",
           "40", "-o", str(tmp / "out"), "--log-file", str(tmp / "run.log"), *[a for t in TASKS for a in ("--task", t)]]
    with open(tmp / "stderr.txt", "wb") as err:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, timeout=600)
    stderr = (tmp / "stderr.txt").read_bytes().decode()
    assert proc.returncode == 0, stderr[-3000:]
    return stderr, (tmp / "run.log").read_text(encoding="utf-8")


def test_a_log_file_has_no_carriage_returns_and_every_line_is_timestamped(plain_run):
    stderr, _ = plain_run
    assert "\r" not in stderr and "\x1b[" not in stderr      # no bar fragments, no terminal escapes
    lines = stderr.splitlines()
    assert lines and all(re.match(STAMP + " ", line) for line in lines), [x for x in lines if not re.match(STAMP, x)]


@pytest.mark.parametrize("task", TASKS)
def test_every_named_phase_has_a_start_and_an_end_line(plain_run, task):
    stderr, _ = plain_run
    started = set(re.findall(rf"^{STAMP} {task}: ([a-z ]+?) started\b", stderr, re.M))
    ended = set(re.findall(rf"^{STAMP} {task}: (?!finished)([a-z ]+?) (?:\d+/\d+ )?in \d", stderr, re.M))
    assert started == ended == EXPECTED[task]
    assert started <= set(progress.PHASES)
    # counted phases say how many, how long and how fast
    assert re.search(rf"^{STAMP} {task}: (images|patches) 40/40 in \d+\.\d s \((\d+(\.\d+)?/s|cached)", stderr, re.M)


def test_each_task_says_its_total_time_and_the_run_ends_with_a_time_table(plain_run):
    stderr, _ = plain_run
    for task in TASKS:
        assert re.search(rf"^{STAMP} {task}: finished in \d+\.\d s \(computed\)$", stderr, re.M), task
    table = stderr[stderr.index("time per task of"):].splitlines()
    assert re.search(r"task +total +dataset +model load +images +texts +patches +scoring +probe sweep +bootstrap "
                     r"+write", table[1])
    rows = {line.split()[1]: line for line in table[2:]}
    assert set(rows) == {*TASKS, "all"}
    assert re.search(r"shapes-linear-probe +\d+\.\d s", rows["shapes-linear-probe"])


def test_the_log_file_gets_the_same_plain_lines(plain_run):
    stderr, logged = plain_run
    strip = [re.sub(f"^{STAMP} ", "", line) for line in stderr.splitlines()]
    assert [re.sub(f"^{STAMP} ", "", line) for line in logged.splitlines()] == strip


def test_on_a_terminal_phases_are_bars_that_leave_one_line_each():
    out = io.StringIO()
    out.isatty = lambda: True
    lines: list[str] = []
    tee = io.StringIO()
    rep = progress.Reporter(lines.append, bars=True, tee=tee, stream=out)
    with progress.use(rep), rep.task("demo-task"):
        with progress.phase("scoring"):
            with progress.phase("images", 3) as ph:
                for _ in range(3):
                    ph.advance()
    shown = out.getvalue()                                # while a bar is live, lines go through its console
    assert "demo-task: images 3/3 in" in shown and "started" not in shown     # the bar showed the start
    assert [x.split(" in ")[0] for x in lines] == ["demo-task: scoring", "demo-task: finished"]
    assert "demo-task: images started (3)" in tee.getvalue() and "demo-task: finished in" in tee.getvalue()


def test_a_long_counted_phase_prints_where_it_is_and_a_failed_one_says_so():
    lines: list[str] = []
    rep = progress.Reporter(lines.append, heartbeat_s=0.0)
    with rep.task("t"), pytest.raises(RuntimeError), rep.phase("texts", 4) as ph:
        ph.advance(2)
        time.sleep(0.01)
        ph.advance(1)
        raise RuntimeError("boom")
    assert lines[0] == "t: texts started (4)"
    assert re.fullmatch(r"t: texts 2/4 after \d\.\d s \(\d+(\.\d+)?/s\)", lines[1])
    assert re.fullmatch(r"t: texts failed after \d\.\d s", lines[-2]) and lines[-1].startswith("t: finished in")


def test_unknown_phase_names_are_a_bug():
    with pytest.raises(ValueError, match="unknown phase"), progress.phase("thinking"):
        pass
