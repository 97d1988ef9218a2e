"""sparc_eval.hub against the loopback Hub stand-in: download on first use, verification against the Hub's
checksums, revisions, offline mode, and the errors for an unreachable Hub, missing files and gated repos."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_client import REPO_ROOT, run_hub
from hub_server import git_blob_id, hub_fixture  # noqa: F401  (the hub fixture)

from sparc_eval.errors import ConfigError
from sparc_eval.hub import download_command, hf_model_files, open_clip_tag_source, parse_repo_ref

WEIGHTS = bytes(range(256)) * 64
CONFIG = b'{"arch": "tiny"}\n'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_verifies_records_and_serves_offline_afterwards(hub, tmp_path):
    old = hub.add_repo("org/tiny", {"config.json": b'{"arch": "old"}\n', "model.safetensors": WEIGHTS[:999]}, tag="v1")
    new = hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    hf = tmp_path / "hf"
    weights, config, pinned, by_commit = run_hub(hub, hf, [
        ("fetch_file", ["org/tiny", "model.safetensors"], {}),
        ("fetch_file", ["org/tiny", "config.json"], {}),
        ("fetch_file", ["org/tiny", "model.safetensors"], {"revision": "v1"}),
        ("fetch_file", ["org/tiny", "config.json"], {"revision": old}),
    ])
    w = weights["ok"]
    assert (w["repo"], w["revision"], w["commit"], w["file"]) == ("org/tiny", "main", new, "model.safetensors")
    assert w["sha256"] == _sha(WEIGHTS) == w["etag"] and w["lfs"] is True and w["verified"] is True
    assert w["size"] == len(WEIGHTS) and Path(w["path"]).read_bytes() == WEIGHTS
    c = config["ok"]
    # a regular git file: the Hub's ETag is its git blob id, checked too
    assert c["etag"] == git_blob_id(CONFIG) and c["lfs"] is False and c["verified"] and c["sha256"] == _sha(CONFIG)
    assert pinned["ok"]["commit"] == old and pinned["ok"]["sha256"] == _sha(WEIGHTS[:999])
    assert by_commit["ok"]["commit"] == old and Path(by_commit["ok"]["path"]).read_bytes() == b'{"arch": "old"}\n'

    # offline: the cache answers and no request is made; then with the server gone, online falls back to the cache
    before = len(hub.requests)
    offline = run_hub(hub, hf, [("fetch_file", ["org/tiny", "model.safetensors"], {}),
                                ("fetch_file", ["org/tiny", "model.safetensors"], {"revision": "v1"})], offline=True)
    assert len(hub.requests) == before
    assert [r["ok"]["commit"] for r in offline] == [new, old]
    assert offline[0]["ok"]["sha256"] == w["sha256"]
    hub.stop()
    again = run_hub(hub, hf, [("fetch_file", ["org/tiny", "model.safetensors"], {}),
                              ("fetch_file", ["org/tiny", "model.safetensors"], {"offline": True})])
    assert [r["ok"]["sha256"] for r in again] == [w["sha256"]] * 2


def test_offline_miss_names_the_fetch_command_and_touches_nothing(hub, tmp_path):
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    (miss, miss_rev, miss_snapshot), = [run_hub(hub, tmp_path / "hf", [
        ("fetch_file", ["org/tiny", "model.safetensors"], {}),
        ("fetch_file", ["org/tiny", "model.safetensors"], {"revision": "v2"}),
        ("fetch_snapshot", ["org/tiny"], {}),
    ], offline=True)]
    assert not hub.requests
    assert miss["error"] == "HubOfflineMiss" and miss["exit_code"] == 2
    assert "`hf download org/tiny model.safetensors`" in miss["message"]
    assert "`hf download org/tiny model.safetensors --revision v2`" in miss_rev["message"]
    assert miss_snapshot["error"] == "HubOfflineMiss" and "hf download org/tiny" in miss_snapshot["message"]


def test_unreachable_hub_refused_and_timeout(hub, tmp_path):
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    hub.hang = 6.0  # longer than the client's HF_HUB_ETAG_TIMEOUT (3 s in HubStandIn.env)
    timeout, = run_hub(hub, tmp_path / "hf", [("fetch_file", ["org/tiny", "model.safetensors"], {})])
    assert timeout["error"] == "HubUnreachable" and "Timeout" in timeout["message"]
    hub.hang = 0.0
    hub.stop()
    refused, snapshot = run_hub(hub, tmp_path / "hf", [("fetch_file", ["org/tiny", "model.safetensors"], {}),
                                                       ("fetch_snapshot", ["org/tiny"], {})])
    for err in (refused, snapshot, timeout):
        assert err["exit_code"] == 2
        assert "org/tiny" in err["message"] and "--offline" in err["message"]
        assert "hf download org/tiny" in err["message"]
    assert refused["error"] == "HubUnreachable" and "ConnectError" in refused["message"]
    assert "model.safetensors" in refused["message"]
    assert snapshot["error"] == "HubUnreachable"


def test_missing_repo_revision_file_and_gated_repo(hub, tmp_path):
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    hub.add_repo("org/gated", {"model.safetensors": WEIGHTS})
    hub.gate("org/gated", "hf_secret")
    hub.add_repo("org/flaky", {"model.safetensors": WEIGHTS})
    hub.fault("org/flaky/model.safetensors", "404")
    calls = [("fetch_file", ["org/absent", "model.safetensors"], {}),
             ("fetch_file", ["org/tiny", "model.safetensors"], {"revision": "nope"}),
             ("fetch_file", ["org/tiny", "other.bin"], {}),
             ("fetch_file", ["org/gated", "model.safetensors"], {}),
             ("fetch_snapshot", ["org/gated"], {}),
             ("fetch_file", ["org/flaky", "model.safetensors"], {})]
    repo, rev, file, gated, gated_snap, flaky = run_hub(hub, tmp_path / "hf", calls)
    assert repo["error"] == "HubNotFound" and "org/absent" in repo["message"] and "HF_TOKEN" in repo["message"]
    assert rev["error"] == "HubNotFound" and "'nope'" in rev["message"]
    assert file["error"] == "HubNotFound" and "other.bin" in file["message"]
    assert flaky["error"] == "HubNotFound" and "org/flaky/model.safetensors" in flaky["message"]
    for err in (gated, gated_snap):
        assert err["error"] == "HubAccessDenied" and err["exit_code"] == 2
        assert "gated" in err["message"] and "HF_TOKEN" in err["message"] and "--offline" in err["message"]
    ok, = run_hub(hub, tmp_path / "hf", [("fetch_file", ["org/gated", "model.safetensors"], {})], token="hf_secret")
    assert ok["ok"]["sha256"] == _sha(WEIGHTS)


def test_wrong_bytes_are_refused_and_removed_and_a_cut_transfer_resumes(hub, tmp_path):
    big = bytes(range(256)) * 2048
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS, "config.json": CONFIG, "big.bin": big})
    hub.fault("org/tiny/model.safetensors", "wrong-bytes", times=1)
    hub.fault("org/tiny/config.json", "wrong-bytes", times=1)
    hub.fault("org/tiny/big.bin", "truncate")
    hf = tmp_path / "hf"
    bad, bad_config, resumed, retry = run_hub(hub, hf, [
        ("fetch_file", ["org/tiny", "model.safetensors"], {}),
        ("fetch_file", ["org/tiny", "config.json"], {}),
        ("fetch_file", ["org/tiny", "big.bin"], {}),
        ("fetch_file", ["org/tiny", "model.safetensors"], {}),
    ])
    assert bad["error"] == "HubIntegrityError" and bad["exit_code"] == 2
    assert _sha(WEIGHTS) in bad["message"] and "removed" in bad["message"]
    assert bad_config["error"] == "HubIntegrityError" and git_blob_id(CONFIG) in bad_config["message"]
    assert resumed["ok"]["sha256"] == _sha(big) and resumed["ok"]["verified"]
    assert retry["ok"]["sha256"] == _sha(WEIGHTS)  # the bad copy was not trusted: fetched again
    assert len([p for m, p in hub.requests if m == "GET" and p.endswith("/model.safetensors")]) == 2


def test_model_repos_open_clip_tag_hf_hub_and_transformers(hub, tmp_path):
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    tag_repo, names = open_clip_tag_source(cfg)
    assert (tag_repo, names) == ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
                                 ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
    tag_commit = hub.add_repo(tag_repo, {"open_clip_pytorch_model.bin": b"pickle" * 10,
                                         "open_clip_model.safetensors": WEIGHTS, "open_clip_config.json": CONFIG})
    v1 = hub.add_repo("org/tiny-openclip", {"open_clip_config.json": b"{}", "open_clip_pytorch_model.bin": WEIGHTS[:10]})
    hub.add_repo("org/tiny-openclip", {"open_clip_config.json": CONFIG, "open_clip_model.safetensors": WEIGHTS})
    hf_files = {"config.json": CONFIG, "preprocessor_config.json": b"{}", "tokenizer_config.json": b"{}",
                "vocab.json": b"{}", "merges.txt": b"#version: 0.2\n", "model.safetensors": WEIGHTS,
                "pytorch_model.bin": b"pickle", "flax_model.msgpack": b"flax", "README.md": b"# tiny\n"}
    hf_commit = hub.add_repo("org/tiny-hf", hf_files)
    hf = tmp_path / "hf"
    calls = [("fetch_open_clip_tag", ["ViT-B-32", "laion2b_s34b_b79k", cfg], {}),
             ("fetch_open_clip_hub", [f"org/tiny-openclip@{v1}"], {}),
             ("fetch_open_clip_hub", ["org/tiny-openclip"], {}),
             ("fetch_hf_model", ["org/tiny-hf"], {})]
    tag, pinned, latest, hf_model = run_hub(hub, hf, calls)
    assert tag["ok"]["weights"]["file"] == "open_clip_model.safetensors"
    assert tag["ok"]["weights"]["commit"] == tag_commit and tag["ok"]["weights"]["sha256"] == _sha(WEIGHTS)
    # an old revision without safetensors falls back to the pickle, which the caller loads weights_only
    assert pinned["ok"]["weights"]["file"] == "open_clip_pytorch_model.bin" and pinned["ok"]["weights"]["commit"] == v1
    assert pinned["ok"]["config"]["revision"] == v1
    assert latest["ok"]["weights"]["file"] == "open_clip_model.safetensors"
    snap = hf_model["ok"]
    assert snap["commit"] == hf_commit
    assert sorted(snap["files"]) == ["config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
                                     "tokenizer_config.json", "vocab.json"]
    assert snap["files"]["model.safetensors"] == _sha(WEIGHTS)
    folder = Path(snap["folder"])
    assert (folder / "config.json").read_bytes() == CONFIG and not (folder / "pytorch_model.bin").exists()
    hub.stop()
    offline = run_hub(hub, hf, calls, offline=True)
    assert [r.get("ok") for r in offline] == [tag["ok"], pinned["ok"], latest["ok"], snap]


def test_dataset_snapshot_of_shards(hub, tmp_path):
    files = {"test/nshards.txt": "2\n", "test/0.tar": b"0" * 512, "test/1.tar": b"1" * 512, "train/0.tar": b"t" * 512,
             "classnames.txt": "a\nb\n", "zeroshot_classification_templates.txt": "a photo of a {c}.\n"}
    commit = hub.add_repo("clip-benchmark/wds_shapes", files, repo_type="dataset")
    patterns = ["test/*", "*.txt"]
    snap, = run_hub(hub, tmp_path / "hf", [("fetch_snapshot", ["clip-benchmark/wds_shapes"],
                                             {"repo_type": "dataset", "patterns": patterns})])
    s = snap["ok"]
    assert s["commit"] == commit and s["repo_type"] == "dataset"
    assert sorted(s["files"]) == ["classnames.txt", "test/0.tar", "test/1.tar", "test/nshards.txt",
                                  "zeroshot_classification_templates.txt"]
    assert (Path(s["folder"]) / "test" / "nshards.txt").read_text() == "2\n"
    assert not any("train/" in p for _, p in hub.requests)


def test_names_and_choices():
    assert parse_repo_ref("laion/CLIP-ViT-B-32-laion2B-s34B-b79K@v1.0") == ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "v1.0")
    assert parse_repo_ref("org/name") == ("org/name", None)
    for bad in ("org/name@", "/name", "a/b/c", "org/na me", ""):
        with pytest.raises(ConfigError, match="ORG/NAME"):
            parse_repo_ref(bad)
    assert download_command("org/x", "a b.bin", revision="v1") == "hf download org/x 'a b.bin' --revision v1"
    assert download_command("clip-benchmark/wds_cars", repo_type="dataset") == \
        "hf download clip-benchmark/wds_cars --repo-type dataset"
    assert hf_model_files(["config.json", "model.safetensors", "pytorch_model.bin", "sub/x.json"]) == \
        ["config.json", "model.safetensors"]
    assert hf_model_files(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]
    assert open_clip_tag_source({"hf_hub": "timm/vit_base_patch32_clip_224.openai/"}) == \
        ("timm/vit_base_patch32_clip_224.openai", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"])
    assert open_clip_tag_source({"hf_hub": "org/repo/weights.bin"}) == ("org/repo", ["weights.safetensors", "weights.bin"])
    assert open_clip_tag_source({"url": "https://x/y.pt", "hf_hub": ""}) is None


def test_set_offline_must_come_before_huggingface_hub_is_imported(tmp_path):
    script = ("import os, sys\nfrom sparc_eval.hub import set_offline\n"
              "first = set_offline(True)\nimport huggingface_hub.constants as c\n"
              "os.environ.pop('HF_HUB_OFFLINE')\nlate = set_offline(True)\n"
              "print(first, c.HF_HUB_OFFLINE, late)")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "True", "True"]
    script = script.replace("first = set_offline(True)\nimport huggingface_hub.constants as c",
                            "import huggingface_hub.constants as c\nfirst = set_offline(True)")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split()[:2] == ["False", "False"]  # imported first: its global lags, and we say so
