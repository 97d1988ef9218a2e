"""The HTML leaderboard in a real headless browser (Debian's chromium driven by playwright), at 1400x1000.

Two boards: the golden results (hand-written names and values: escaping, sorting, details links) and real
results of the bundled checkpoints and the oracle on four demo tasks of a small shapes world (layout,
charts, task views, the example gallery).

Needs ``apt-get install chromium`` (the Makefile's test setup) and the ``playwright`` Python package;
no browser is ever downloaded: playwright launches ``/usr/bin/chromium``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

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


def open_page(browser, html: Path):
    """``html`` opened from disk at 1400x1000; console messages, errors, dialogs and requests recorded."""
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.events = []
    pg.on("console", lambda m: pg.events.append((m.type, m.text)))
    pg.on("pageerror", lambda e: pg.events.append(("pageerror", str(e))))
    pg.on("dialog", lambda d: (pg.events.append(("dialog", d.message)), d.dismiss()))
    pg.on("request", lambda r: pg.events.append(("request", r.url)) if not r.url.startswith("file:") else None)
    pg.goto(html.as_uri())
    return pg


@pytest.fixture
def page(browser, tmp_path):
    """The golden board with a baseline."""
    pg = open_page(browser, write_board(build(collect([GOLDEN]), baseline="clip-base"), tmp_path / "board.html"))
    yield pg
    pg.close()


def models(pg, table: str = "#board-table") -> list[str]:
    return pg.locator(f"{table} tbody td.model").evaluate_all("cells => cells.map(c => c.firstChild.textContent)")


def sort_by(pg, label: str) -> None:
    pg.locator("#board-table thead th button.sort", has_text=label).first.click()


def test_page_loads_without_console_errors_or_network(page):
    assert page.title() == "Leaderboard"
    assert page.locator("#board-table tbody tr").count() == 4
    assert page.locator("figure.chart").count() == 7                 # Average, coarse, fine and the 4 tasks
    assert page.events == []


def test_a_script_model_name_renders_as_text(page):
    assert SCRIPT in models(page)
    assert page.evaluate("document.scripts.length") == 1             # only the page's own script
    chart = page.locator("figure.chart").first                      # labels are cut to fit; the full name in its title
    assert SCRIPT[:20] in chart.inner_text() and any(t.startswith(SCRIPT) for t in chart.locator("title").all_text_contents())
    assert not any(kind == "dialog" for kind, _ in page.events)


def test_sorting_by_header_is_direction_aware_and_toggles(page):
    assert models(page) == ["R&D model", SCRIPT, "clip-base", "50%_off|v2"]      # by rank
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


def test_cells_hold_one_line_and_the_toggle_shows_intervals_and_differences(page):
    cell = page.locator("#board-table tbody tr").nth(1).locator("td.task[title*='toy-captions']")   # <script>
    assert cell.inner_text() == "10.0"
    assert "95% interval [8.0, 12.0]" in cell.get_attribute("title") and "-10.0 vs the baseline" in cell.get_attribute("title")
    page.locator("label[for=show-ci]").click()
    assert cell.inner_text() == "10.0 [8.0, 12.0] -10.0"
    assert page.events == []


# -- a board of real results ------------------------------------------------------------------------------
REAL_TASKS = ["shapes-retrieval", "shapes-zeroshot", "shapes-zeroshot-seg", "shapes-sugarcrepe"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def real_html(small_world, tmp_path_factory) -> Path:
    """The bundled SPARC and CLIP checkpoints (seed 0) and the ground-truth oracle (role reference) on four demo
    tasks of the small shapes world, as the HTML board with CLIP as the baseline."""
    from conftest import tasks_on

    from sparc_eval.api import evaluate

    tmp = tmp_path_factory.mktemp("real-board")
    include = tasks_on(small_world, tmp / "tasks", REAL_TASKS)
    out = tmp / "results"
    kw = dict(include=[include], output=out, progress=False, log=lambda m: None)
    for method in ("sparc", "clip"):
        evaluate(f"sparc:{REPO}/checkpoints/shapes-{method}-seed0", REAL_TASKS, model_name=f"shapes-{method}", **kw)
    evaluate("py:sparc_eval.models.oracle:shapes_oracle", REAL_TASKS, pretrained=str(small_world), model_name="oracle",
             role="reference", **kw)
    return write_board(build(collect([out]), baseline="shapes-clip"), tmp / "board.html")


@pytest.fixture
def real(browser, real_html):
    pg = open_page(browser, real_html)
    yield pg
    assert pg.events == []                                           # no console message, error or request
    pg.close()


def test_the_model_column_stays_while_every_task_column_is_reachable(real):
    assert real.evaluate("document.documentElement.scrollWidth") <= 1400        # the page itself never scrolls sideways
    box = real.locator("#board .scroll").bounding_box()
    heads = real.locator("#board-table thead tr:nth-child(2) th")
    labels = heads.evaluate_all("hs => hs.map(h => h.querySelector('button').textContent)")
    assert labels[:3] == ["Rank", "Model", "Tasks"] and set(REAL_TASKS) <= set(labels)
    model = real.locator("#board-table tbody td.model").first
    for i in range(3, heads.count()):
        heads.nth(i).scroll_into_view_if_needed()
        th = heads.nth(i).bounding_box()
        assert box["x"] - 1 <= th["x"] and th["x"] + th["width"] <= box["x"] + box["width"] + 1, labels[i]
        m = model.bounding_box()
        assert box["x"] <= m["x"] < box["x"] + 100 and m["x"] + m["width"] <= th["x"] + 1, labels[i]   # still in view
    real.locator("#board .scroll").evaluate("el => el.scrollLeft = el.scrollWidth")
    assert real.locator("#board-table tbody td.model").first.bounding_box()["x"] == pytest.approx(model.bounding_box()["x"])
    assert model.evaluate("td => getComputedStyle(td).position") == "sticky"


def test_columns_are_grouped_by_task_group_and_rows_ranked_with_the_reference_apart(real):
    bands = real.locator("#board-table tr.bands th.band").all_inner_texts()
    assert [b.lower() for b in bands] == ["summary", "coarse", "fine-grained"]
    rows = real.locator("#board-table tbody tr")
    assert models(real)[-1] == "oracle" and "role-reference" in rows.last.get_attribute("class")
    assert rows.last.locator("td.best").count() == 0                 # 100 everywhere, never "best in column"
    ranks = rows.evaluate_all("rs => rs.map(r => r.cells[0].textContent)")
    assert ranks == ["1", "2", "–"]
    assert rows.first.locator("td.best").count() > 0


def test_every_chart_has_a_chance_line_and_whiskers(real):
    charts = real.locator("figure.chart")
    assert charts.count() == 3 + len(REAL_TASKS)                     # Average, coarse, fine-grained, the tasks
    for i in range(charts.count()):
        chart = charts.nth(i)
        name = chart.get_attribute("data-column")
        assert chart.locator("line.chance").count() == 1, name
        assert chart.locator("line.whisker").count() >= 2, name       # every model row has its interval
        assert chart.locator("circle.dot").count() == 3, name


def test_task_details_show_the_views_that_fit_and_an_example_gallery(real):
    def details(task):
        real.locator(f"#board-table thead a.detail[title='details of {task}']").click()
        d = real.locator(f"details:has(summary strong:text-is('{task}'))")
        expect(d).to_have_attribute("open", "")
        return d

    retrieval = details("shapes-retrieval")
    heads = retrieval.locator("thead th button").all_inner_texts()
    metrics = [h for h in heads if "R@" in h]
    assert metrics[:4] == ["mean_R@1 ↑", "i2t_R@1 ↑", "i2t_R@5 ↑", "i2t_R@10 ↑"]   # natural order, arrows
    assert retrieval.locator("figure.view", has_text="Recall@k").locator("polyline.curve").count() == 6
    gallery = retrieval.locator(".gallery")
    images = gallery.locator("figure.query img")
    assert images.count() == 8
    assert all(src.startswith("data:image/jpeg;base64,") for src in images.evaluate_all("i => i.map(x => x.src)"))
    assert images.first.evaluate("i => i.naturalWidth") <= 96
    shown = gallery.locator(".top.shown")
    assert shown.count() == 8 and shown.first.locator("li").count() == 5
    first = shown.first.inner_text()
    gallery.locator("select").select_option(index=2)               # the oracle: every first caption right
    assert gallery.locator(".top.shown").first.inner_text() != first
    assert gallery.locator(".top.shown li:first-child.hit").count() == 8

    zeroshot = details("shapes-zeroshot")
    matrices = zeroshot.locator("figure.view", has_text="Confusion matrices").locator("svg")
    assert matrices.count() == 3 and "circle" in matrices.first.text_content()   # class names on the axes
    assert zeroshot.locator(".gallery figure.query").count() == 8

    assert details("shapes-sugarcrepe").locator("figure.view", has_text="acc per category").locator("circle.dot").count() == 7 * 3
    assert details("shapes-zeroshot-seg").locator("figure.view", has_text="IoU per class").count() == 1


def test_the_page_is_one_small_self_contained_file(real_html):
    text = real_html.read_text(encoding="utf-8")
    assert len(text.encode()) < 5_000_000
    assert text.count("<script") == 1 and "http://" not in text and "https://" not in text
