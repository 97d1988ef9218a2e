"""Regenerate the README's generated blocks (between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``).

    python tools/readme_blocks.py          # rewrite README.md
    python tools/readme_blocks.py --check  # exit 1 if a block is stale (the tests run this check)

Blocks: ``reader-layouts`` (each dataset reader's on-disk ``layout``, the same text `sparc-eval data verify`
prints).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def reader_layouts() -> str:
    from sparc_eval.data.base import formats

    out = []
    for name, reader in sorted(formats().items()):
        body = "\n".join(line[4:] if line.startswith("    ") else line for line in reader.layout.strip("\n").splitlines())
        out += [f"<details><summary><code>{name}</code> ({reader.kind})</summary>", "", "```", body, "```", "",
                "</details>"]
    return "\n".join(out)


BLOCKS = {"reader-layouts": reader_layouts}


def render(text: str) -> str:
    """``text`` with every generated block replaced by its current content."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{README}: no <!-- {name}:start --> ... <!-- {name}:end --> block")
        content = make()
        text = pattern.sub(lambda m, c=content: m.group(1) + c + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is stale; write nothing")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        if new != text:
            print(f"{README}: generated blocks are stale; run python tools/readme_blocks.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
