"""The stand-in's repos are real: open_clip loads its hf-hub: repo from it as from the Hub, and a
CLIP_benchmark wds repo fetched with ``hub.fetch_wds`` (the default of ``wds/<name>``, no data root) reads
exactly as the local folder it was made from, online and then offline with the server gone."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
from cb_layouts import export_wds_classification
from hub_client import REPO_ROOT, run_hub
from hub_repos import folder_repo, open_clip_repo
from hub_server import hub_fixture  # noqa: F401  (the hub fixture)
from PIL import Image

from sparc_eval.clip_benchmark_names import parse_hub_root, task_config
from sparc_eval.data.base import get_reader

LOADERS = r"""
import hashlib, json, sys
import open_clip
from sparc_eval.open_clip_configs import open_clip_module
open_clip_module()  # registers ViT-Tiny-8-64, whose config the repo carries anyway
model, _, preprocess = open_clip.create_model_and_transforms("hf-hub:org/tiny-openclip")
oc = hashlib.sha256(model.visual.conv1.weight.detach().numpy().tobytes()).hexdigest()
print(json.dumps({"open_clip": oc, "mean": list(model.visual.image_mean)}))
"""


def test_open_clip_loads_the_stand_in_repo(hub, tmp_path):
    files, state = open_clip_repo()
    hub.add_repo("org/tiny-openclip", files)
    env = hub.env(tmp_path / "hf")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", LOADERS], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["open_clip"] == hashlib.sha256(state["visual.conv1.weight"].numpy().tobytes()).hexdigest()
    assert out["mean"] == list(json.loads(files["open_clip_config.json"])["preprocess_cfg"]["mean"])
    assert not hub.unknown


def _same(a, b):
    assert a.labels.tolist() == b.labels.tolist() and a.classnames == b.classnames and a.templates == b.templates
    assert a.fingerprint == b.fingerprint  # identity is the content read, not where it was found
    for p, q in zip(a.images.paths, b.images.paths):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))


def test_wds_from_the_hub_without_a_data_root(hub, small_world, tmp_path):
    local = export_wds_classification(small_world, tmp_path / "export")
    (local / "train").mkdir()
    (local / "train" / "nshards.txt").write_text("1\n")
    (local / "train" / "0.tar").write_bytes((local / "test" / "0.tar").read_bytes())
    commit = hub.add_repo("clip-benchmark/wds_shapes", folder_repo(local), repo_type="dataset")
    repo, revision = parse_hub_root(task_config("wds/shapes")["dataset"]["root"])
    assert (repo, revision) == ("clip-benchmark/wds_shapes", "main")
    hf = tmp_path / "hf"
    snap, = run_hub(hub, hf, [("fetch_wds", [repo], {"revision": revision})])
    s = snap["ok"]
    assert s["commit"] == commit and "train/0.tar" not in s["files"]  # only the split asked for
    assert s["files"]["test/0.tar"] == hashlib.sha256((local / "test" / "0.tar").read_bytes()).hexdigest()
    reader = get_reader("wds")
    cfg = {"split": "test", "classnames": "classnames.txt"}
    fetched = reader.load({**cfg, "root": s["folder"]})
    _same(fetched, reader.load({**cfg, "root": str(local)}))
    # the task of the CLIP_benchmark name, built on the fetched folder, is classification (its dataset_type)
    assert task_config("wds/shapes", s["folder"])["type"] == "zeroshot_classification"
    hub.stop()
    again, = run_hub(hub, hf, [("fetch_wds", [repo], {})], offline=True)
    assert again["ok"] == s
