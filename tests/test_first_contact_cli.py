"""First contact through the CLI, as open_clip, transformers and CLIP_benchmark users arrive: weights and
webdataset sets fetched on first use from the Hub (the loopback stand-in at HF_ENDPOINT; each download runs
``python -m sparc_eval`` in a subprocess, because huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE at
import), verified and recorded in the result; offline runs served from the cache or refused with the command
that fetches; bad input from the Hub or in a wds folder is exit 2 naming what to fix."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cb_layouts import export_wds_classification
from conftest import TINY_OPEN_CLIP, tasks_on
from hub_client import REPO_ROOT
from hub_repos import folder_repo, open_clip_repo
from hub_server import hub_fixture  # noqa: F401  (the hub fixture)

TAG_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # open_clip's ViT-B-32 laion2b_s34b_b79k


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sparc(hub, hf_home: Path, *args, offline: bool = False, token: str | None = None) -> subprocess.CompletedProcess:
    """``python -m sparc_eval ARGS`` against the stand-in, with its own Hugging Face cache ``hf_home``."""
    env = hub.env(hf_home, offline=offline, token=token)
    env.pop("SPARC_EVAL_DATA", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return subprocess.run([sys.executable, "-m", "sparc_eval", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=900)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one-line error of an exit-2 run, checked to name each of ``needles`` (and to carry no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-4000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-2000:])
    return proc.stderr


def result(out: Path, model: str, task: str) -> dict:
    return json.loads((out / model / f"{task.replace('/', '__')}.json").read_text())


@pytest.fixture
def shapes_tasks(small_world, tmp_path) -> Path:
    return tasks_on(small_world, tmp_path / "tasks", ["shapes-zeroshot"])


def test_open_clip_tag_is_fetched_from_its_real_repo_and_recorded(hub, tmp_path, shapes_tasks):
    """``--model open_clip:ViT-B-32 --pretrained laion2b_s34b_b79k``: open_clip's repo for the tag, its
    safetensors (a pickled twin beside it is never fetched), sha256 checked, repo and commit in the result."""
    import open_clip
    import torch
    from safetensors.torch import save

    torch.manual_seed(0)
    state = {k: v.detach().half().contiguous() for k, v in open_clip.create_model("ViT-B-32").state_dict().items()}
    weights = save(state)
    del state
    commit = hub.add_repo(TAG_REPO, {"open_clip_model.safetensors": weights, "open_clip_pytorch_model.bin": b"pickle!",
                                     "open_clip_config.json": "{}"})
    hf, out = tmp_path / "hf", tmp_path / "out"
    ok(sparc(hub, hf, "run", "--task", "shapes-zeroshot", "--include-path", shapes_tasks, "--model",
             "open_clip:ViT-B-32", "--pretrained", "laion2b_s34b_b79k", "--model-name", "b32", "--limit", 6,
             "--batch-size", 6, "-o", out, "--device", "cpu", "-q"))
    model = result(out, "b32", "shapes-zeroshot")["model"]
    src = model["source"]
    assert (src["repo"], src["file"], src["commit"], src["revision"]) == (TAG_REPO, "open_clip_model.safetensors",
                                                                          commit, "main")
    assert src["sha256"] == _sha(weights) == model["weights_sha256"] and src["verified"] and src["lfs"]
    blob = hf / "hub" / f"models--{TAG_REPO.replace('/', '--')}" / "blobs" / _sha(weights)
    assert blob.is_file() and blob.stat().st_size == len(weights)  # the standard cache, blob named by its sha256
    assert not hub.requests_for("open_clip_pytorch_model.bin")


def test_hf_hub_revisions_then_offline_hit_and_miss(hub, tmp_path, shapes_tasks, hf_clip_dir):
    """``open_clip:hf-hub:ORG/NAME[@REV]`` downloads on first use (at v1 the config names a Hugging Face
    tokenizer, whose files come from the repo at that commit, as for the Hub's SigLIP repos); with the server
    gone, --offline serves the cache and gives the same numbers; an offline miss (HF_HUB_OFFLINE=1) is exit 2
    naming `hf download`."""
    old_files, _ = open_clip_repo(seed=0)
    config = json.loads(old_files["open_clip_config.json"])
    config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = "org/tiny-openclip"
    tokenizer = {n: hf_clip_dir / n for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")}
    old_files = {**old_files, "open_clip_config.json": json.dumps(config).encode(), **tokenizer}
    new_files, _ = open_clip_repo(seed=1)
    v1 = hub.add_repo("org/tiny-openclip", old_files, tag="v1")
    main = hub.add_repo("org/tiny-openclip", new_files)
    hf, out = tmp_path / "hf", tmp_path / "out"
    common = ["--task", "shapes-zeroshot", "--include-path", shapes_tasks, "--limit", 8, "-o", out, "--device", "cpu", "-q"]
    ok(sparc(hub, hf, "run", "--model", "open_clip:hf-hub:org/tiny-openclip", "--model-name", "latest", *common))
    ok(sparc(hub, hf, "run", "--model", "open_clip:hf-hub:org/tiny-openclip@v1", "--model-name", "v1", *common))
    latest, pinned = result(out, "latest", "shapes-zeroshot"), result(out, "v1", "shapes-zeroshot")
    weights = "open_clip_model.safetensors"
    assert latest["model"]["source"]["commit"] == main and pinned["model"]["source"]["commit"] == v1
    assert latest["model"]["weights_sha256"] == _sha(new_files[weights]) == latest["model"]["source"]["sha256"]
    assert pinned["model"]["weights_sha256"] == _sha(old_files[weights])
    assert pinned["model"]["source"]["revision"] == "v1"
    assert pinned["preprocessing"]["tokenizer"] == "HFTokenizer" and latest["preprocessing"]["tokenizer"] == "SimpleTokenizer"
    assert hub.requests_for(f"/resolve/{v1}/tokenizer_config.json")
    assert pinned["model"]["source"]["config_sha256"] == _sha(old_files["open_clip_config.json"])

    hub.stop()  # --offline (the flag; HF_HUB_OFFLINE unset) with the server gone: the cache serves
    ok(sparc(hub, hf, "run", "--offline", "--model", "open_clip:hf-hub:org/tiny-openclip", "--model-name", "offline",
             *common))
    offline = result(out, "offline", "shapes-zeroshot")
    assert offline["metrics"] == latest["metrics"] and offline["model"]["source"] == latest["model"]["source"]
    miss = sparc(hub, hf, "run", "--model", "open_clip:hf-hub:org/never-fetched", "--model-name", "never", *common,
                 offline=True)
    refused(miss, "org/never-fetched", "offline mode is on", "`hf download org/never-fetched open_clip_config.json`")


def test_hf_repo_at_a_revision_gated_until_the_token_is_given(hub, tmp_path, hf_clip_dir, shapes_tasks):
    """``hf:ORG/NAME@REV``: the transformers files of that commit (safetensors, never the pickled twin); a gated
    repo is exit 2 asking for HF_TOKEN, and HF_TOKEN is honoured."""
    from sparc_eval.checkpoint_io import folder_weights_sha256

    files = {**folder_repo(hf_clip_dir), "pytorch_model.bin": b"a pickle that is never fetched"}
    v1 = hub.add_repo("org/tiny-clip", files, tag="v1")
    hub.add_repo("org/tiny-clip", {**files, "README.md": "# moved on\n"})
    hub.gate("org/tiny-clip", "hf_secret")
    hf, out = tmp_path / "hf", tmp_path / "out"
    args = ["run", "--task", "shapes-zeroshot", "--include-path", shapes_tasks, "--model", "hf:org/tiny-clip@v1",
            "--model-name", "clip", "--limit", 8, "-o", out, "--device", "cpu", "-q"]
    refused(sparc(hub, hf, *args), "org/tiny-clip", "gated", "HF_TOKEN", "--offline")
    ok(sparc(hub, hf, *args, token="hf_secret"))
    model = result(out, "clip", "shapes-zeroshot")["model"]
    assert model["source"]["commit"] == v1 and model["source"]["repo"] == "org/tiny-clip"
    assert model["weights_sha256"] == folder_weights_sha256(hf_clip_dir)
    assert "pytorch_model.bin" not in model["source"]["files"] and not hub.requests_for("pytorch_model.bin")


def test_wds_without_a_data_root_reads_the_hub_repo_in_place(hub, tmp_path, small_world, runner, cli):
    """``wds/<name>`` with no data root, and CLIP_benchmark's Hub URL template, download the split's shards once
    into the Hugging Face cache and read them in place: the same samples, fingerprint and numbers as the local
    folder, and nothing extracted."""
    from sparc_eval.fileio import cache_root

    local = export_wds_classification(small_world, tmp_path / "wds_shapes")
    export_wds_classification(small_world, tmp_path / "wds_train", split="train")
    files = {**folder_repo(local), **{f"train/{k}": v for k, v in folder_repo(tmp_path / "wds_train" / "train").items()}}
    commit = hub.add_repo("clip-benchmark/wds_shapes", files, repo_type="dataset")
    hub.add_repo("clip-benchmark/wds_vtab-shapes", folder_repo(local), repo_type="dataset")
    hf, out = tmp_path / "hf", tmp_path / "out"
    ok(sparc(hub, hf, "run", "--task", "wds/shapes", "--model", TINY_OPEN_CLIP, "--model-name", "m", "-o", out,
             "--device", "cpu", "-q"))
    ok(sparc(hub, hf, "run", "--task", "wds/vtab/shapes", "--model", TINY_OPEN_CLIP, "--model-name", "m", "-o", out,
             "--data-root", "https://huggingface.co/datasets/clip-benchmark/wds_{dataset_cleaned}/tree/main",
             "--device", "cpu", "-q"))
    res = runner.invoke(cli, ["run", "--task", "wds/shapes", "--data-root", str(local), "--model", TINY_OPEN_CLIP,
                              "--model-name", "local", "-o", str(out), "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    hub_run, vtab, folder = (result(out, "m", "wds/shapes"), result(out, "m", "wds/vtab/shapes"),
                             result(out, "local", "wds/shapes"))
    src = hub_run["details"]["source"]
    assert (src["repo"], src["commit"], src["repo_type"]) == ("clip-benchmark/wds_shapes", commit, "dataset")
    assert sorted(src["files"]) == sorted(n for n in files if not n.startswith("train/"))  # the test split only
    assert not hub.requests_for("train/")
    assert vtab["details"]["source"]["repo"] == "clip-benchmark/wds_vtab-shapes"
    for other in (vtab, folder):
        assert other["metrics"] == hub_run["metrics"]
        assert other["dataset"]["fingerprint"] == hub_run["dataset"]["fingerprint"]
    assert hub_run["dataset"]["name"] == "wds/shapes" and hub_run["task"]["name"] == "wds/shapes"
    assert hub_run["task"]["config_sha256"] == folder["task"]["config_sha256"]  # where the data lives is not the task
    assert not (cache_root() / "extracted" / "wds").exists()
    assert any((hf / "hub" / "datasets--clip-benchmark--wds_shapes" / "blobs").iterdir())


def test_hub_errors_name_the_repo_and_the_offline_alternative(hub, tmp_path):
    """``data download wds/<name>`` (light: no model): missing repo, gated repo, then the Hub unreachable."""
    hub.add_repo("clip-benchmark/wds_gated", {"test/nshards.txt": "1\n", "test/0.tar": b"\0" * 1024},
                 repo_type="dataset")
    hub.gate("clip-benchmark/wds_gated", "hf_secret", repo_type="dataset")
    hf = tmp_path / "hf"
    refused(sparc(hub, hf, "data", "download", "wds/absent"), "clip-benchmark/wds_absent", "no such repo", "--offline")
    refused(sparc(hub, hf, "data", "download", "wds/gated"), "clip-benchmark/wds_gated", "gated", "HF_TOKEN",
            "hf download clip-benchmark/wds_gated --repo-type dataset", "--offline")
    got = ok(sparc(hub, hf, "data", "download", "wds/gated", token="hf_secret")).stdout
    assert "clip-benchmark/wds_gated" in got and "2 files" in got
    before = len(hub.requests)
    assert "2 files" in ok(sparc(hub, hf, "data", "download", "wds/gated", "--offline")).stdout
    assert len(hub.requests) == before  # --offline: not one request, the cache answers
    hub.stop()
    refused(sparc(hub, hf, "data", "download", "wds/elsewhere"), "clip-benchmark/wds_elsewhere", "could not reach",
            "--offline")
    refused(sparc(hub, hf, "data", "download", "wds/elsewhere", "--offline"), "offline mode is on",
            "hf download clip-benchmark/wds_elsewhere --repo-type dataset")


# -- in-process: CLIP_benchmark names, listings, data download/verify, bad wds folders -----------------------
def _run(runner, cli, *args):
    return runner.invoke(cli, ["run", *map(str, args)])


def test_bad_wds_folders_are_exit_2_naming_the_file(runner, cli, small_world, tmp_path):
    root = export_wds_classification(small_world, tmp_path / "wds_shapes")
    common = ["--model", TINY_OPEN_CLIP, "-o", tmp_path / "out", "--device", "cpu", "-q"]
    broken = tmp_path / "no_count"
    shutil.copytree(root, broken)
    (broken / "test" / "nshards.txt").unlink()
    res = _run(runner, cli, "--task", "wds/shapes", "--data-root", broken, *common)
    assert res.exit_code == 2 and f"{broken / 'test' / 'nshards.txt'} is missing" in res.output
    empty = tmp_path / "empty"
    shutil.copytree(root, empty)
    import tarfile

    with tarfile.open(empty / "test" / "1.tar", "w"):
        pass
    res = _run(runner, cli, "--task", "wds/shapes", "--data-root", empty, *common)
    assert res.exit_code == 2 and f"shard {empty / 'test' / '1.tar'} holds no samples" in res.output
    names = tmp_path / "names"
    shutil.copytree(root, names)
    (names / "classnames.txt").write_text("circle\nsquare\n")
    res = _run(runner, cli, "--task", "wds/shapes", "--data-root", names, *common)
    assert res.exit_code == 2 and str(names / "classnames.txt") in res.output and "outside [0, 2)" in res.output


def test_clip_benchmark_task_names_templates_and_suggestions(tmp_path):
    from sparc_eval import clip_benchmark_names as cb
    from sparc_eval.errors import ConfigError, UnknownNameError
    from sparc_eval.tasks import load_task

    a = load_task("mscoco_captions", data_root=tmp_path / "a" / "{dataset}")
    b = load_task("mscoco_captions", data_root=tmp_path / "b")
    assert a.dataset["root"] == str(tmp_path / "a" / "mscoco_captions") and b.dataset["root"] == str(tmp_path / "b")
    assert a.name == "mscoco_captions" and a.config_sha256 == b.config_sha256 and a.dataset["name"] == "mscoco_captions"
    assert load_task("imagenetv2", data_root="/d").dataset["root"] == "/d/ImageNetV2-matched-frequency"
    assert load_task("flickr30k", data_root="/d", overrides=["split=val"]).dataset["split"] == "val"
    assert load_task("imagenet-o", data_root="/d").dataset["variant"] == "o"
    hub = load_task("wds/vtab/cifar10")
    assert hub.dataset["root"] == "https://huggingface.co/datasets/clip-benchmark/wds_vtab-cifar10/tree/main"
    # a URL through a path type (click's Path) lost a slash: still the Hub repo
    collapsed = load_task("wds/cars", data_root=Path("https://huggingface.co/datasets/clip-benchmark/wds_{dataset_cleaned}/tree/v2"))
    assert collapsed.dataset["root"] == "https://huggingface.co/datasets/clip-benchmark/wds_cars/tree/v2"
    assert cb.parse_hub_root(collapsed.dataset["root"]) == ("clip-benchmark/wds_cars", "v2")
    with pytest.raises(UnknownNameError, match=r"Did you mean: .*imagenet1k.*'imagenet1k' is CLIP_benchmark's name, "
                                               r"sparc-eval's own task on that data in its own layout is 'imagenet-zeroshot'"):
        load_task("imagenet1kk", data_root="/d")
    with pytest.raises(ConfigError, match=r"'wds/vtab/cifar10'"):
        load_task("vtab/cifar10")
    with pytest.raises(ConfigError, match=r"CLIP_benchmark's templates.*'coco-retrieval'"):
        load_task("coco-retrieval", data_root="/d/{dataset}")
    with pytest.raises(ConfigError, match=r"use --task wds/mscoco_captions"):
        load_task("mscoco_captions", data_root="https://huggingface.co/datasets/clip-benchmark/wds_x/tree/main")
    assert load_task("shapes-zeroshot", data_root="/d/{dataset}").name == "shapes-zeroshot"  # no ${data_root} in it


def test_listings(runner, cli):
    res = runner.invoke(cli, ["list", "models", "--arch", "ViT-B-32"])
    assert res.exit_code == 0, res.output
    assert "--pretrained laion2b_s34b_b79k" in res.output and TAG_REPO in res.output
    assert "ViT-B-32-256" not in res.output  # an exact name is not a prefix filter
    res = runner.invoke(cli, ["list", "models"])
    assert res.exit_code == 0 and "open_clip:ViT-Tiny-8-64" in res.output and "laion2b_s34b_b79k" in res.output
    assert "hf-hub:ORG/NAME" in res.output
    res = runner.invoke(cli, ["list", "tasks", "--clip-benchmark"])
    assert res.exit_code == 0, res.output
    for needle in ("mscoco_captions", "imagenet-zeroshot", "wds/vtab/cifar10", "sugar_crepe/swap_att", "imagenet-o",
                   "wds/vtab/<name>"):
        assert needle in res.output, needle
    res = runner.invoke(cli, ["list", "models", "--arch", "NoSuchArch"])
    assert res.exit_code == 2 and "Unknown open_clip architecture" in res.output


def test_data_download_logins_offline_and_verify_everything(runner, cli, small_world, tmp_path):
    res = runner.invoke(cli, ["data", "download", "imagenet1k", "--data-root", str(tmp_path)])
    assert res.exit_code == 0 and f"{tmp_path}/imagenet/val/<wnid>/" in res.output and "image-net.org" in res.output
    res = runner.invoke(cli, ["data", "download", "coco", "--data-root", str(tmp_path), "--offline"])
    assert res.exit_code == 2 and "val2014.zip" in res.output and "offline" in res.output
    res = runner.invoke(cli, ["data", "download"])
    assert res.exit_code == 0 and "voc2012" in res.output and "wds/<name>" in res.output

    data = tmp_path / "data"
    export_wds_classification(small_world, data / "wds_cifar10")  # what wds-cifar10-zeroshot/-linear-probe read
    res = runner.invoke(cli, ["data", "verify", "--data-root", str(data)])
    assert res.exit_code == 0, res.output
    assert "wds-cifar10-linear-probe, wds-cifar10-zeroshot: OK" in res.output
    assert "1 dataset(s) found" in res.output and "task(s) whose data is not there (ade20k" in res.output
    (data / "wds_cifar10" / "test" / "nshards.txt").unlink()
    res = runner.invoke(cli, ["data", "verify", "--data-root", str(data)])
    assert res.exit_code == 1 and "nshards.txt is missing" in res.output
