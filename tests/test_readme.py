"""The README's generated blocks are current (``python tools/readme_blocks.py`` rewrites them)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / "tools" / "readme_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
