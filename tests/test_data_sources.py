"""``data download``'s catalogue and fetcher: sources that land where the task YAMLs look, archives fetched
from the loopback server, extracted once and safely, sums recorded and verified; login-only datasets."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from hub_server import hub_fixture  # noqa: F401  (the hub fixture)

from sparc_eval import clip_benchmark_names as cb
from sparc_eval.data.base import get_reader
from sparc_eval.data.sources import CATALOGUE, DatasetSource, Source, extract, fetch, get_source, plan, verify_sums
from sparc_eval.errors import DataError, UnknownNameError
from sparc_eval.params import validate

TASKS = Path(__file__).resolve().parent.parent / "tasks"


def test_catalogue_lands_where_the_tasks_read():
    for ds in CATALOGUE.values():
        assert ds.tasks and (ds.sources or ds.login)
        for src in ds.sources:
            assert src.url.startswith(("http://", "https://")) and src.name
        for task in ds.tasks:
            if cb.is_cb_name(task):
                continue  # CLIP_benchmark names read <data root>/<folder> as given
            raw = yaml.safe_load((TASKS / f"{task}.yaml").read_text())
            root = raw["dataset"]["root"].replace("${data_root}", "").strip("/")
            intos = [s.into for s in ds.sources] or [root]
            assert any(root.startswith(i) or i.startswith(root) for i in intos), (ds.name, task, root, intos)
    assert [d.name for d in plan("sugar_crepe")] == ["coco2017", "sugar_crepe"]  # SugarCrepe's images are COCO's
    assert "{root}/imagenet/val/<wnid>/" in get_source("imagenet").login
    assert "hf download facebook/winoground --repo-type dataset" in get_source("winoground").login
    with pytest.raises(UnknownNameError, match="coco"):
        get_source("cocoa")


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for m in members:
            payload = (data or {}).get(m.name)
            if payload is not None:
                m.size = len(payload)
            t.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def test_fetch_a_coco_like_dataset_then_read_it_in_both_layouts(hub, small_world, tmp_path):
    karpathy = json.loads((small_world / "dataset_shapes.json").read_text())
    for im in karpathy["images"]:
        im["filepath"] = "val2014"
    images = {f"val2014/{p.name}": p.read_bytes() for p in sorted((small_world / "images").glob("*.png"))}
    coco = (small_world / "annotations" / "captions_test.json").read_bytes()
    dataset = DatasetSource("coco-shapes", "the shapes world as COCO 2014", (
        Source(hub.add_url("zips/val2014.zip", _zip(images)), "coco"),
        Source(hub.add_url("caption_datasets.zip", _zip({"dataset_coco.json": json.dumps(karpathy).encode(),
                                                        "dataset_flickr30k.json": b"{}"})), "coco",
               members=("dataset_coco.json",)),
        Source(hub.add_url("coco_test_karpathy.json", coco), "coco")), ("coco-retrieval",))
    root = tmp_path / "data"
    fetched = fetch(dataset, root, progress=False, log=lambda m: None)
    assert [f.file.checked for f in fetched] == ["first-download"] * 3
    assert not (root / "coco" / "dataset_flickr30k.json").exists()  # only the members asked for
    ours = get_reader("karpathy").load(validate({"root": str(root / "coco"), "annotations": "dataset_coco.json"},
                                                get_reader("karpathy").params, "karpathy"))
    cbl = get_reader("cb_mscoco").load(validate({"root": str(root / "coco")}, get_reader("cb_mscoco").params, "cb"))
    assert len(ours.images) == len(cbl.images) == 40 and set(cbl.captions) <= set(ours.captions)
    gets = len(hub.requests)
    again = fetch(dataset, root, progress=False, log=lambda m: None)
    assert len(hub.requests) == gets and [f.placed for f in again] == [(), (), (root / "coco" / "coco_test_karpathy.json",)]
    assert verify_sums(root) == []
    (root / ".downloads" / "val2014.zip").write_bytes(b"changed")
    (root / "coco" / "coco_test_karpathy.json").unlink()
    assert len(verify_sums(root)) == 2
    with pytest.raises(DataError, match="does not match the recorded sum"):
        fetch(dataset, root, progress=False, log=lambda m: None)


@pytest.mark.parametrize("member, match", [
    (tarfile.TarInfo("../evil.txt"), "unsafe path"),
    (tarfile.TarInfo("/etc/evil.txt"), "unsafe path"),
    ("symlink", "link or special file"),
])
def test_unsafe_archives_are_refused_whole(tmp_path, member, match):
    if member == "symlink":
        member = tarfile.TarInfo("ok/link")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    good = tarfile.TarInfo("ok/a.txt")
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar([good, member], {"ok/a.txt": b"a", "../evil.txt": b"x", "/etc/evil.txt": b"x"}))
    with pytest.raises(DataError, match=match):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok" / "a.txt").exists() and not (tmp_path / "evil.txt").exists()
    z = tmp_path / "a.zip"
    z.write_bytes(_zip({"ok.txt": b"x", "../evil.txt": b"x"}))
    with pytest.raises(DataError, match="unsafe path"):
        extract(z, tmp_path / "out")


def test_offline_fetch_names_the_url(tmp_path):
    with pytest.raises(DataError, match="offline.*cocodataset.org"):
        fetch(get_source("coco"), tmp_path, offline=True, progress=False, log=lambda m: None)
