"""User-facing errors. The CLI prints these without a traceback and exits with code 2.

Each message names the file or field, what was found and what was expected. Bugs still raise
ordinary exceptions.
"""
from __future__ import annotations


class SparcEvalError(Exception):
    """Base class for every error caused by user input (files, options, configs)."""

    exit_code = 2


class ConfigError(SparcEvalError):
    """A task YAML, suite, `--param` override or training config is invalid."""


class DataError(SparcEvalError):
    """A dataset file or folder is missing or malformed."""


class DataIntegrityError(DataError):
    """A dataset file is corrupt or hostile: a sample id or image listed twice, an empty caption, a
    path that leaves the data root, a field of the wrong type, a damaged archive. ``data verify``
    exits 2 on these (1 on files that are merely missing)."""


class ModelLoadError(SparcEvalError):
    """A model spec, checkpoint or weights file cannot be loaded."""


class UnknownNameError(SparcEvalError):
    """A task, suite, model type or dataset name does not exist; suggests the closest names."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        import difflib

        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        listing = ", ".join(sorted(known)) if len(known) <= 30 else f"{len(known)} names; see `sparc-eval list`"
        super().__init__(f"Unknown {kind} {name!r}.{hint} Known: {listing}.")
        self.kind, self.name, self.known = kind, name, list(known)


class ResultsError(SparcEvalError):
    """A result file, baseline or results folder is unusable."""


class IntegrityError(ResultsError):
    """A result disagrees with itself: its samples file is missing, changed, short or long, a stored
    metric differs from the one its samples give, or a metric is not a finite number. Never skipped."""
