"""The ``sparc-eval`` command line. Thin: parse options, call the API, print.

One module per command group (``run``, ``listing``, ``data``, ...), each importing only click at
module level; heavy modules (torch, models) are imported inside the commands that need them, so
``list``, ``leaderboard`` and ``check`` start fast. User errors (``SparcEvalError``) are printed
without a traceback and exit with code 2.
"""
from __future__ import annotations

import click

from ..errors import SparcEvalError


class UserError(click.ClickException):
    exit_code = 2


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SparcEvalError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            if e.filename is None:  # not about a file or folder: a bug, keep the traceback
                raise
            # a disk that is full or read-only, a folder without permission: the environment, not a bug
            raise UserError(f"{e.filename}: {e.strerror or e} (nothing half-written is left: every file is "
                            f"written to a temporary name and renamed when complete)") from None


def log(msg: str) -> None:
    """Progress and status lines go to stderr; tables to stdout."""
    click.echo(msg, err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="sparc-eval")
def cli() -> None:
    """Evaluate image-text models (CLIP, SPARC, SigLIP, ...) on coarse and fine-grained tasks."""


def main() -> None:
    cli(prog_name="sparc-eval")


def _register() -> None:
    from . import cache, data, listing, merge, pretrain, results, run

    for module in (run, listing, data, merge, results, pretrain, cache):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
