"""Caption metrics equal pycocoevalcap's own evaluator on the same inputs; METEOR's JVM starts once;
SPICE is never downloaded; predictions files are validated with clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparc_eval.data.caption_results import read_caption_results
from sparc_eval.errors import DataError
from sparc_eval.metrics import captioning
from sparc_eval.metrics.captioning import (
    caption_scores,
    meteor_scorer,
    spice_command,
    spice_missing,
)

# Gapped integer ids, 1 / 3 / 6 / 2 references, case and punctuation for the PTB tokenizer.
REFS = {
    5: ["A man riding a wave on top of a surfboard."],
    17: ["Two dogs play with a frisbee.", "two dogs are playing in the park", "A pair of dogs, running!"],
    42: ["A red bus on the street.", "A double decker bus.", "The bus is red.", "a bus driving down a road",
         "red bus parked", "A large red bus in the city"],
    1000: ["A plate of food with broccoli.", "broccoli and rice on a plate"],
}
PREDS = {5: "a man riding a wave on a surfboard", 17: "Two dogs playing with a frisbee in the park.",
         42: "a red bus driving down the street", 1000: "a plate of rice"}


class NoSpice:
    """Stands in for pycocoevalcap's Spice, whose constructor downloads Stanford CoreNLP."""

    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(gts)

    def method(self):
        return "SPICE"


def patch_cocoevalcap(monkeypatch):
    """COCOEvalCap without SPICE and with the process's running METEOR (one JVM per test session)."""
    import pycocoevalcap.eval as ev

    monkeypatch.setattr(ev, "Spice", NoSpice)
    monkeypatch.setattr(ev, "Meteor", lambda: meteor_scorer()[0])
    return ev


def _cocoevalcap(tmp_path: Path, monkeypatch) -> dict[str, float]:
    """pycocoevalcap's COCOEvalCap on files (see ``patch_cocoevalcap``)."""
    from pycocotools.coco import COCO

    ev = patch_cocoevalcap(monkeypatch)
    gt = {"info": {}, "licenses": [], "images": [{"id": i, "file_name": f"{i}.jpg"} for i in [*REFS, 7]],
          "annotations": [{"id": n, "image_id": i, "caption": c}
                          for n, (i, c) in enumerate((i, c) for i, cs in REFS.items() for c in cs)]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": i, "caption": c} for i, c in PREDS.items()]))
    coco = COCO(str(tmp_path / "gt.json"))
    res = coco.loadRes(str(tmp_path / "res.json"))
    e = ev.COCOEvalCap(coco, res)
    e.params["image_id"] = res.getImgIds()
    e.evaluate()
    return e.eval


def test_caption_metrics_equal_cocoevalcap(tmp_path, monkeypatch):
    theirs = _cocoevalcap(tmp_path, monkeypatch)
    ours = caption_scores({str(k): v for k, v in REFS.items()}, {str(k): v for k, v in PREDS.items()})
    for coco_key, key in captioning.COCO_TO_KEY.items():
        if key != "SPICE":
            assert ours.metrics[key] == pytest.approx(100 * theirs[coco_key], rel=1e-12, abs=1e-12), key
    assert set(ours.metrics) == set(captioning.METRIC_KEYS)
    for key in ("ROUGE_L", "CIDEr"):
        assert sum(v[key] for v in ours.per_image.values()) / 4 == pytest.approx(ours.metrics[key], rel=1e-12)


def test_meteor_jvm_starts_once_per_process():
    first, _ = meteor_scorer()
    again, cost = meteor_scorer()
    assert again is first and cost == 0.0 and captioning._METEOR["startup_s"] > 0
    assert first.meteor_p.poll() is None


def test_spice_is_reported_unavailable_and_never_downloaded(tmp_path):
    import pycocoevalcap.spice as spice_pkg

    lib = Path(spice_pkg.__file__).parent / "lib"
    before = sorted(p.name for p in lib.iterdir())
    assert "unavailable" in spice_missing(None) and "spice_dir" in spice_missing(None)
    assert "lacks stanford-corenlp-3.6.0.jar" in spice_missing(tmp_path)
    for jar in captioning.SPICE_JARS:
        (tmp_path / jar).write_bytes(b"")
    assert spice_missing(tmp_path) is None
    cmd = spice_command(tmp_path, tmp_path / "in.json", tmp_path / "out.json")
    assert cmd[:2] == ["java", "-Xmx8G"] and "edu.anu.spice.SpiceScorer" in cmd and "-cache" not in cmd
    assert str(tmp_path / captioning.SPICE_JARS[1]) in cmd[3].split(":")
    scores = caption_scores({"1": ["a dog"]}, {"1": "a dog"})
    assert "SPICE" not in scores.metrics
    assert sorted(p.name for p in lib.iterdir()) == before


@pytest.mark.parametrize("content, message", [
    ({"image_id": 1, "caption": "x"}, "expected a JSON list"),
    ([["1", "a dog"]], r"entry \[0\]: expected an object"),
    ([{"image_id": 1}], r"entry \[0\]: missing field\(s\) \['caption'\]"),
    ([{"image_id": True, "caption": "a dog"}], "image_id must be an integer or string"),
    ([{"image_id": 1, "caption": 3}], "caption must be a string"),
    ([{"image_id": 1, "caption": "a dog"}, {"image_id": 2, "caption": " ... "}], r"entry \[1\] \(image_id 2\): empty caption"),
    ([{"image_id": 1, "caption": "a dog"}, {"image_id": "1", "caption": "a cat"}], r"entry \[1\]: duplicate image_id '1'"),
    ([{"image_id": 1, "caption": "a dog"}, {"image_id": 99, "caption": "a cat"}],
     r"1 image_id\(s\) not in the dataset, e.g. \['99'\]"),
    ([], "no predictions"),
])
def test_predictions_file_errors(tmp_path, content, message):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=message) as e:
        read_caption_results(path, ["1", "2", "3"])
    assert str(path) in str(e.value)


def test_predictions_file_valid_and_malformed_json(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([{"image_id": 1, "caption": " a dog "}, {"image_id": "3", "caption": "a cat"}]))
    assert read_caption_results(path, ["1", "2", "3"]) == {"1": "a dog", "3": "a cat"}
    path.write_text('[{"image_id": 1, "caption": "a dog"')
    with pytest.raises(DataError, match="malformed JSON at line 1"):
        read_caption_results(path, ["1"])
