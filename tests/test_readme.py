"""The README's generated blocks are current (``python tools/readme_blocks.py`` rewrites them; the demo
block, ``python tools/readme_blocks.py --demo`` after ``python tools/checkpoints.py cards``)."""
from __future__ import annotations

from pathlib import Path

from conftest import repo_tool

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    return repo_tool("readme_blocks")


def test_generated_readme_blocks_are_current():
    tool = _tool()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.render(text) == text, "README.md is stale: run python tools/readme_blocks.py"


def test_reader_layout_block_lists_every_reader_layout_verbatim():
    from sparc_eval.data.base import formats

    block = _tool().reader_layouts()
    for name, reader in formats().items():
        assert f"<code>{name}</code>" in block
        first = reader.layout.strip("\n").splitlines()[0].strip()
        assert first in block, name


def test_demo_block_is_recomputed_from_the_bundled_checkpoints(demo_results):
    tool = _tool()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    fresh = tool.demo_block(demo_results[0])
    assert tool.same_up_to_numbers(tool.block(text, "demo"), fresh), (
        "README.md's demo block is stale: run python tools/checkpoints.py cards, then python tools/readme_blocks.py "
        "--demo\n" + fresh)


def test_same_up_to_numbers_tolerates_small_differences_only():
    same = _tool().same_up_to_numbers
    assert same("SPARC +2.4 [0.9, 4.1] yes", "SPARC +2.5 [1.0, 4.1] yes")
    assert not same("SPARC +2.4 [0.9, 4.1] yes", "SPARC +3.4 [0.9, 4.1] yes")
    assert not same("SPARC +2.4 [0.9, 4.1] yes", "SPARC +2.4 [0.9, 4.1] no")
