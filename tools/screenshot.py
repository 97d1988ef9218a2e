"""Regenerate the README's leaderboard screenshot from the demo page, in headless Chromium.

    make demo && python tools/screenshot.py            # results/demo/leaderboard.html -> docs/leaderboard.png

Opens the page at 1400 px wide (the width the page is laid out for) in Debian's chromium (``/usr/bin/chromium``,
driven by playwright; no browser is downloaded) and captures the leaderboard table, every task column included,
from the top of the page to the end of the seed-group table (``--to board``: to the end of the leaderboard).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run"]


def screenshot(page: Path, out: Path, width: int = 1400, to: str = "seeds") -> Path:
    """Capture ``page`` from its top to the end of section ``to`` (``board`` or ``seeds``) as a PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1)
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.goto(page.resolve().as_uri())
            section = pg.locator(f"#{to}")
            if section.count() == 0:
                raise SystemExit(f"{page}: no #{to} section (is it a sparc-eval leaderboard page?)")
            box = section.bounding_box()
            scroll = pg.locator("#board .scroll").first
            if scroll.evaluate("el => el.scrollWidth > el.clientWidth + 1"):
                print(f"warning: the table of {page} is wider than {width} px; the screenshot shows its left part",
                      file=sys.stderr)
            out.parent.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 12})
            if errors:
                raise SystemExit(f"{page}: the page logged errors: {errors}")
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--page", type=Path, default=REPO / "results" / "demo" / "leaderboard.html",
                    help="the leaderboard page (default: the one `make demo` writes)")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "leaderboard.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--to", choices=("board", "seeds"), default="seeds", help="last section shown")
    args = ap.parse_args(argv)
    if not args.page.is_file():
        raise SystemExit(f"{args.page}: not found; run `make demo` first (or pass --page)")
    print(f"wrote {screenshot(args.page, args.output, args.width, args.to)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
