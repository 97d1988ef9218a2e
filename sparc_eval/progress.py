"""What a run is doing, for a person reading it: live bars on a terminal, plain timestamped lines elsewhere.

A run is a sequence of named phases (``PHASES``), each inside the scope of one task. The ``Reporter``
shows them in one of two forms:

- **terminal** (``bars=True``): a live bar per phase (rich), nested phases as extra rows; when a
  phase ends its bar gives way to one line with its count, time and rate.
- **plain** (``bars=False``): one line when a phase starts and one when it ends, never a carriage
  return: ``12:03:41 shapes-retrieval: images 1000/1000 in 2.1 s (476/s)``; a counted phase that runs
  longer than ``heartbeat_s`` also prints where it is every ``heartbeat_s``.

``tee`` (a text file) always receives the plain form, timestamped, whatever the terminal shows.
Each task ends with a line giving its total time, and ``table()`` prints the time of every phase per
task (self time: a phase's time without the phases nested in it, so a row adds up to its total).

Code that reports (the engine, the API, task types) calls ``phase(...)``, which uses the reporter the
caller activated with ``use(reporter)``, or a quiet one.
"""
from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

#: The named phases of a run, in the order they happen. ``images``/``texts``/``patches`` are extraction
#: per input kind; ``scoring`` is the task's own computation (extraction phases nest inside it).
PHASES = ("dataset", "model load", "images", "texts", "patches", "scoring", "probe sweep", "bootstrap", "write")
EXTRACTION = ("images", "texts", "patches")
FORMATS = ("auto", "terminal", "plain")
RUN_SCOPE = "run"


def seconds(s: float) -> str:
    """``0.4 s``, ``29.0 s``, ``3 min 12 s``, ``1 h 02 min``."""
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def rate(count: float, s: float) -> str:
    """Items per second: ``476/s``, ``3.2/s``, ``0.41/s``."""
    r = count / max(s, 1e-9)
    return f"{r:.0f}/s" if r >= 100 else f"{r:.1f}/s" if r >= 1 else f"{r:.2f}/s"


def stamp() -> str:
    return time.strftime("%H:%M:%S")


@dataclass
class Phase:
    """One running phase; ``advance(n)`` counts work done, ``note`` is added to the end line."""

    reporter: Reporter
    name: str
    scope: str
    total: int | None = None
    note: str = ""
    start_note: str = ""
    bars: bool = True
    done: int = 0
    started: float = 0.0
    child_s: float = 0.0
    _bar: object = field(default=None, repr=False)
    _last_line: float = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.reporter._advanced(self, n)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def start_line(self) -> str:
        detail = self.start_note or (f"{self.total}" if self.total is not None else "")
        return f"{self.name} started" + (f" ({detail})" if detail else "")

    def end_line(self, failed: bool = False) -> str:
        took = self.elapsed
        if failed:
            return f"{self.name} failed after {seconds(took)}"
        if self.total is None:
            return f"{self.name} in {seconds(took)}" + (f" ({self.note})" if self.note else "")
        extra = [rate(self.done, took)] if self.done and not self.note.startswith("cached") else []
        extra += [self.note] if self.note else []
        return f"{self.name} {self.done}/{self.total} in {seconds(took)}" + (f" ({'; '.join(extra)})" if extra else "")

    def progress_line(self) -> str:
        return f"{self.name} {self.done}/{self.total} after {seconds(self.elapsed)} ({rate(self.done, self.elapsed)})"


@dataclass
class TaskTimes:
    """Self time per phase of one task, and its total (``None`` while it runs)."""

    phases: dict[str, float] = field(default_factory=dict)
    total: float | None = None
    status: str = ""


class Reporter:
    """Shows phases and log lines (see the module docstring).

    ``log`` receives every line meant for the reader (None: nowhere); ``bars`` shows live bars on
    ``stream`` instead of start lines; ``stamp`` prefixes lines with the time of day (the plain form of
    a command line tool); ``tee`` is a text file that gets every line in the plain, timestamped form.
    """

    def __init__(self, log: Callable[[str], None] | None = None, *, bars: bool = False, stamp: bool = False,
                 tee: TextIO | None = None, stream: TextIO | None = None, heartbeat_s: float = 60.0):
        self._log, self.bars, self.stamp, self.tee = log, bars, stamp, tee
        self.stream = stream
        self.heartbeat_s = heartbeat_s
        self.stack: list[Phase] = []
        self.scope: str | None = None
        self.times: dict[str, TaskTimes] = {}
        self._progress = None
        self._console = None

    # -- lines ------------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        """A line for the reader (and the tee), timestamped in the plain form."""
        for line in str(msg).splitlines() or [""]:
            self._emit(line)

    def _emit(self, line: str, terminal: bool = True) -> None:
        now = stamp()
        if self.tee is not None:
            self.tee.write(f"{now} {line}\n")
            self.tee.flush()
        if not terminal or self._log is None:
            return
        text = f"{now} {line}" if self.stamp and not self.bars else line
        if self._progress is not None:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            self._log(text)

    # -- phases -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str, total: int | None = None, *, scope: str | None = None, note: str = "",
              bars: bool = True) -> Iterator[Phase]:
        """Report phase ``name`` (one of ``PHASES``) of ``scope`` (default: the current task) while the block
        runs; ``total`` items are expected, counted with ``Phase.advance``. ``bars=False``: no bar for it
        even on a terminal (its lines still show)."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; expected one of {PHASES}")
        ph = Phase(self, name, scope or self.scope or RUN_SCOPE, total, start_note=note, bars=bars)
        ph.started = ph._last_line = time.perf_counter()
        self.stack.append(ph)
        live = self.bars and bars
        if live:
            ph._bar = self._bar_start(ph)
        self._emit(f"{ph.scope}: {ph.start_line()}", terminal=not live)
        failed = True
        try:
            yield ph
            failed = False
        finally:
            took = ph.elapsed
            self.stack.remove(ph)
            if live:
                self._bar_stop(ph)
            self._emit(f"{ph.scope}: {ph.end_line(failed)}")
            times = self.times.setdefault(ph.scope, TaskTimes())
            times.phases[name] = times.phases.get(name, 0.0) + took - ph.child_s
            parent = next((p for p in reversed(self.stack) if p.scope == ph.scope), None)
            if parent is not None:
                parent.child_s += took

    def _advanced(self, ph: Phase, n: int) -> None:
        if ph._bar is not None:
            self._progress.update(ph._bar, advance=n, count=f"{ph.done}/{ph.total}" if ph.total is not None else "")
        elif ph.total is not None and time.perf_counter() - ph._last_line >= self.heartbeat_s and ph.done < ph.total:
            ph._last_line = time.perf_counter()
            self._emit(f"{ph.scope}: {ph.progress_line()}")

    def _bar_start(self, ph: Phase):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._console = Console(file=self.stream or sys.stderr, soft_wrap=True)
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=self._console, transient=True, redirect_stdout=False,
                                      redirect_stderr=False)
            self._progress.start()
        from rich.markup import escape

        return self._progress.add_task(escape(f"{ph.scope}: {ph.name}"), total=ph.total,
                                       count=f"0/{ph.total}" if ph.total is not None else "")

    def _bar_stop(self, ph: Phase) -> None:
        self._progress.remove_task(ph._bar)
        ph._bar = None
        if not any(p._bar is not None for p in self.stack):
            self._progress.stop()
            self._progress = self._console = None

    # -- tasks ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[TaskTimes]:
        """The scope of one task: phases inside it are its own; at the end one line with its total time
        (time in its phases before the block, such as reading its dataset, included)."""
        before, self.scope = self.scope, name
        times = self.times.setdefault(name, TaskTimes())
        earlier = sum(times.phases.values())
        t0 = time.perf_counter()
        try:
            yield times
        except BaseException:
            times.status = times.status or "failed"
            raise
        finally:
            self.scope = before
            times.total = earlier + time.perf_counter() - t0
            self._emit(f"{name}: finished in {seconds(times.total)}" + (f" ({times.status})" if times.status else ""))

    def table(self, title: str = "time per task") -> None:
        """Log the self time of every phase per finished task, and forget them."""
        rows = {k: v for k, v in self.times.items() if v.total is not None}
        if not rows:
            return
        used = [p for p in PHASES if any(p in t.phases for t in rows.values())]
        head = ["task", "total", *used]
        body = [[name, seconds(t.total), *(seconds(t.phases[p]) if p in t.phases else "-" for p in used)]
                for name, t in rows.items()]
        all_total = sum(t.total for t in rows.values())
        body.append(["all", seconds(all_total), *(seconds(sum(t.phases.get(p, 0.0) for t in rows.values()))
                                                  for p in used)])
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

        def fmt(r: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        self.log(f"{title} (self time of each phase; nested phases are not counted twice):")
        for r in [head, *body]:
            self.log("  " + fmt(r))
        for k in rows:
            del self.times[k]


_CURRENT: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("sparc_eval_reporter", default=None)
_QUIET = Reporter()


def current() -> Reporter | None:
    """The reporter activated by ``use``, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def use(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the one ``phase`` reports to inside the block."""
    token = _CURRENT.set(reporter)
    try:
        yield reporter
    finally:
        _CURRENT.reset(token)


def phase(name: str, total: int | None = None, *, scope: str | None = None, note: str = "",
          bars: bool = True) -> contextlib.AbstractContextManager[Phase]:
    """``Reporter.phase`` of the active reporter (a quiet one when none is active)."""
    return (current() or _QUIET).phase(name, total, scope=scope, note=note, bars=bars)


def for_terminal(log_format: str = "auto", stream: TextIO | None = None) -> bool:
    """Whether ``log_format`` (one of ``FORMATS``) means live bars on ``stream`` (default stderr)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}; expected one of {FORMATS}")
    stream = stream or sys.stderr
    return log_format == "terminal" or (log_format == "auto" and bool(getattr(stream, "isatty", lambda: False)()))
