"""The HTML leaderboard in a real headless browser (Debian's chromium driven by playwright).

Needs ``apt-get install chromium`` (the Makefile's test setup) and the ``playwright`` Python package;
no browser is ever downloaded: playwright launches ``/usr/bin/chromium``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from sparc_eval.results.collect import collect
from sparc_eval.results.leaderboard import build
from sparc_eval.results.render import write_board

GOLDEN = Path(__file__).parent / "golden" / "results"
CHROMIUM = "/usr/bin/chromium"
SCRIPT = "<script>alert(1)</script>"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--disable-extensions", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    """The golden board with a baseline, opened from disk; console messages, errors and dialogs recorded."""
    html = write_board(build(collect([GOLDEN]), baseline="clip-base"), tmp_path / "board.html")
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.events = []
    pg.on("console", lambda m: pg.events.append((m.type, m.text)))
    pg.on("pageerror", lambda e: pg.events.append(("pageerror", str(e))))
    pg.on("dialog", lambda d: (pg.events.append(("dialog", d.message)), d.dismiss()))
    pg.on("request", lambda r: pg.events.append(("request", r.url)) if not r.url.startswith("file:") else None)
    pg.goto(html.as_uri())
    yield pg
    pg.close()


def models(pg, table: str = "#board-table") -> list[str]:
    return pg.locator(f"{table} tbody td.model").evaluate_all("cells => cells.map(c => c.firstChild.textContent)")


def sort_by(pg, label: str) -> None:
    pg.locator("#board-table thead th button.sort", has_text=label).first.click()


def test_page_loads_without_console_errors_or_network(page):
    assert page.title() == "Leaderboard"
    assert page.locator("#board-table tbody tr").count() == 4
    assert page.locator("figure.chart").count() == 3                 # Average, coarse, fine
    assert page.events == []


def test_a_script_model_name_renders_as_text(page):
    assert SCRIPT in models(page)
    assert page.evaluate("document.scripts.length") == 1             # only the page's own script
    assert SCRIPT in page.locator("figure.chart").first.inner_text()
    assert not any(kind == "dialog" for kind, _ in page.events)


def test_sorting_by_header_is_direction_aware_and_toggles(page):
    assert models(page) == [SCRIPT, "R&D model", "clip-base", "50%_off|v2"]      # by rank
    sort_by(page, "Model")
    assert models(page) == ["50%_off|v2", SCRIPT, "clip-base", "R&D model"]
    sort_by(page, "toy-captions")                                    # CHAIR: lowest (best) first
    assert models(page) == [SCRIPT, "R&D model", "clip-base", "50%_off|v2"]
    assert page.locator("#board-table th", has_text="toy-captions").get_attribute("aria-sort") == "ascending"
    sort_by(page, "toy-captions")
    assert models(page) == ["50%_off|v2", "clip-base", "R&D model", SCRIPT]
    sort_by(page, "toy-pairs")                                       # highest first; the missing value last
    assert models(page) == [SCRIPT, "clip-base", "R&D model", "50%_off|v2"]
    sort_by(page, "toy-pairs")
    assert models(page)[-1] == "50%_off|v2"
    assert page.events == []


def test_task_detail_view_opens_from_the_header_link(page):
    detail = page.locator("details#task-3")
    assert detail.get_attribute("open") is None
    page.locator("#board-table thead th", has_text="toy-retrieval").locator("a.detail").click()
    assert detail.get_attribute("open") == ""
    rows = detail.locator("tbody tr")
    assert rows.count() == 5 and "partial" in rows.last.inner_text()
    assert "i2t_R@1" in detail.locator("thead").inner_text()
    assert page.events == []
