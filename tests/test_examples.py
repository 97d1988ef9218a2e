"""Examples kept for people (``--param examples=N``): the top-5 ids agree with the stored ranks and the
ground truth, change no metric, and the leaderboard page shows at most ``GALLERY_QUERIES`` per task."""
from __future__ import annotations

import json

from conftest import TINY_OPEN_CLIP

from sparc_eval.results.task_views import GALLERY_QUERIES


def _run(runner, cli, world, out, examples):
    res = runner.invoke(cli, ["run", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP, "--param",
                              f"root={world}", "--param", f"examples={examples}", "-o", str(out), "--no-cache", "-q"])
    assert res.exit_code == 0, res.output
    result = json.loads(next(out.rglob("shapes-retrieval.json")).read_text())
    samples = next(out.rglob("shapes-retrieval.samples.jsonl")).read_text().splitlines()
    return result, [json.loads(line) for line in samples]


def test_top5_agree_with_ranks_and_truth_and_the_page_shows_at_most_24(small_world, tmp_path, runner, cli):
    result, records = _run(runner, cli, small_world, tmp_path / "many", 30)
    image_of = {r["id"].removeprefix("caption:"): r["cluster"] for r in records if r["direction"] == "t2i"}
    queries = [r for r in records if "top" in r]
    assert len(queries) == 30 and all(r["direction"] == "i2t" for r in queries)
    for r in queries:
        assert len(r["top"]) == len(set(r["top"])) == 5
        assert r["top_hit"] == [int(image_of[c] == r["cluster"]) for c in r["top"]]
        if r["ties"] == 0:  # rank = captions of other images scored above its best own caption
            first = r["top_hit"].index(1) if 1 in r["top_hit"] else None
            assert (first == r["rank"]) if r["rank"] < 5 else first is None
    shown = result["details"]["examples"]
    assert set(shown["thumbnails"]) == {r["id"].removeprefix("image:") for r in queries}
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in shown["thumbnails"].values())
    assert {c for r in queries for c in r["top"]} == set(shown["texts"])

    none, plain = _run(runner, cli, small_world, tmp_path / "none", 0)
    assert none["metrics"] == result["metrics"] and none["intervals"] == result["intervals"]
    assert "examples" not in none["details"] and not any("top" in r for r in plain)

    page = tmp_path / "board.html"
    res = runner.invoke(cli, ["leaderboard", str(tmp_path / "many"), "-o", str(page)])
    assert res.exit_code == 0, res.output
    assert page.read_text().count('<figure class="query">') == GALLERY_QUERIES < 30
