"""The loopback Hub stand-in speaks what the installed huggingface_hub expects.

The client runs in a subprocess with ``HF_ENDPOINT`` at the stand-in and ``HF_HUB_OFFLINE`` unset (the suite
exports it), because huggingface_hub reads both once, at import.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

from hub_server import git_blob_id, hub_fixture  # noqa: F401  (the hub fixture)

WEIGHTS = bytes(range(256)) * 40  # 10 KiB, served as an LFS file
CONFIG = b'{"model": "tiny"}\n'

CLIENT = textwrap.dedent("""
    import hashlib, json, os
    from pathlib import Path
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    out = {}
    def attempt(name, fn):
        try:
            out[name] = fn()
        except Exception as e:
            out[name] = {"error": type(e).__name__, "message": str(e)[:300]}
    api = HfApi()
    attempt("weights", lambda: os.path.realpath(hf_hub_download("org/tiny", "model.safetensors")))
    attempt("config_v1", lambda: Path(hf_hub_download("org/tiny", "config.json", revision="v1")).read_text())
    attempt("config_main", lambda: Path(hf_hub_download("org/tiny", "config.json")).read_text())
    def info():
        i = api.model_info("org/tiny", files_metadata=True)
        return {"sha": i.sha, "siblings": {s.rfilename: [s.size, s.blob_id, s.lfs.sha256 if s.lfs else None]
                                           for s in i.siblings}}
    attempt("info", info)
    attempt("info_v1", lambda: api.model_info("org/tiny", revision="v1").sha)
    attempt("tree", lambda: sorted((f.path, type(f).__name__, getattr(f, "lfs", None) and f.lfs.sha256)
                                   for f in api.list_repo_tree("org/tiny", recursive=True)))
    attempt("tree_top", lambda: sorted(f.path for f in api.list_repo_tree("org/tiny")))
    attempt("snapshot", lambda: sorted(str(p.relative_to(d)) for d in [Path(snapshot_download("org/tiny"))]
                                       for p in d.rglob("*") if p.is_file()))
    attempt("dataset", lambda: Path(hf_hub_download("org/shards", "test/nshards.txt", repo_type="dataset")).read_text())
    attempt("dataset_info", lambda: api.dataset_info("org/shards").sha)
    attempt("dataset_snapshot", lambda: sorted(str(p.relative_to(d)) for d in [Path(snapshot_download(
        "org/shards", repo_type="dataset", allow_patterns=["test/*"]))] for p in d.rglob("*") if p.is_file()))
    attempt("missing_file", lambda: hf_hub_download("org/tiny", "nope.bin"))
    attempt("missing_repo", lambda: hf_hub_download("org/absent", "config.json"))
    attempt("missing_rev", lambda: hf_hub_download("org/tiny", "config.json", revision="v9"))
    attempt("gated", lambda: Path(hf_hub_download("org/gated", "config.json")).read_text())
    attempt("truncated", lambda: hashlib.sha256(Path(hf_hub_download("org/big", "big.bin")).read_bytes()).hexdigest())
    print(json.dumps(out))
""")


def _client(hub, tmp_path, **kw) -> dict:
    proc = subprocess.run([sys.executable, "-c", CLIENT], env=hub.env(tmp_path / "hf", **kw),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_huggingface_hub_reads_the_stand_in(hub, tmp_path):
    v1 = hub.add_repo("org/tiny", {"config.json": b'{"model": "old"}\n', "model.safetensors": WEIGHTS[:100]}, tag="v1")
    main = hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/extra.txt": "x\n"})
    hub.add_repo("org/shards", {"test/nshards.txt": "2\n", "test/0.tar": b"a" * 100, "test/1.tar": b"b" * 50,
                                "train/0.tar": b"c", "classnames.txt": "x\n"}, repo_type="dataset")
    hub.add_repo("org/gated", {"config.json": CONFIG})
    hub.gate("org/gated", "secret-token")
    big = bytes(range(256)) * 4096  # 1 MiB
    hub.add_repo("org/big", {"big.bin": big})
    hub.fault("org/big/big.bin", "truncate")

    out = _client(hub, tmp_path)
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    # an LFS file is cached as a blob named by its sha256; the snapshot folder is named by the commit
    assert out["weights"].endswith(f"/blobs/{sha}")
    assert out["config_v1"] == '{"model": "old"}\n' and out["config_main"] == CONFIG.decode()
    assert out["info"]["sha"] == main and out["info_v1"] == v1
    assert out["info"]["siblings"]["model.safetensors"] == [len(WEIGHTS), out["info"]["siblings"]["model.safetensors"][1], sha]
    assert out["info"]["siblings"]["config.json"] == [len(CONFIG), git_blob_id(CONFIG), None]
    assert ["model.safetensors", "RepoFile", sha] in out["tree"] and ["sub", "RepoFolder", None] in out["tree"]
    assert ["sub/extra.txt", "RepoFile", None] in out["tree"]
    assert out["tree_top"] == ["config.json", "model.safetensors", "sub"]
    assert out["snapshot"] == ["config.json", "model.safetensors", "sub/extra.txt"]
    assert out["dataset"] == "2\n" and len(out["dataset_info"]) == 40
    assert out["dataset_snapshot"] == ["test/0.tar", "test/1.tar", "test/nshards.txt"]
    assert out["missing_file"]["error"] == "RemoteEntryNotFoundError"
    assert out["missing_repo"]["error"] == "RepositoryNotFoundError"
    assert out["missing_rev"]["error"] == "RevisionNotFoundError"
    assert out["gated"]["error"] == "GatedRepoError"
    # the transfer cut half-way was resumed with a Range request and completed
    assert out["truncated"] == hashlib.sha256(big).hexdigest()
    ranged = [p for m, p in hub.requests if m == "GET" and "big.bin" in p]
    assert len(ranged) == 2
    assert not hub.unknown, hub.unknown


def test_token_opens_a_gated_repo(hub, tmp_path):
    hub.add_repo("org/gated", {"config.json": CONFIG})
    hub.gate("org/gated", "secret-token")
    script = ("from pathlib import Path; from huggingface_hub import hf_hub_download; "
              "print(Path(hf_hub_download('org/gated', 'config.json')).read_text(), end='')")
    proc = subprocess.run([sys.executable, "-c", script], env=hub.env(tmp_path / "hf", token="secret-token"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == CONFIG.decode()
