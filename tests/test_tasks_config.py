"""Task YAMLs: strict validation, substitution, --param overrides, user task folders, suites, the wheel."""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sparc_eval.errors import ConfigError, UnknownNameError
from sparc_eval.metrics import registry
from sparc_eval.tasks import load_suite, load_task, task_files

REPO = Path(__file__).resolve().parent.parent


def _write(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(body)
    return path


GOOD = """name: my-retrieval
type: retrieval
version: 3
dataset: {format: karpathy, root: "${data_root}/mine", annotations: ann.json, split: val}
params: {recall_at: [1, 2]}
main_metric: t2i_R@2
groups: [custom]
"""


def test_every_shipped_task_validates(tmp_path):
    for name in task_files():
        overrides: dict[str, str] = {}
        while True:  # keys only a user can give (e.g. retrieval-custom's CSV files) get a placeholder
            try:
                cfg = load_task(name, data_root=tmp_path, overrides=overrides)
                break
            except ConfigError as e:
                key = re.search(r"required key '([^']+)' is missing", str(e))
                assert key and key.group(1) not in overrides, str(e)
                overrides[key.group(1)] = "user-supplied"
        assert cfg.name == name and isinstance(cfg.version, int)
        assert registry.is_registered(cfg.main_metric)


def test_user_task_folder_substitution_and_overrides(tmp_path):
    folder = tmp_path / "mytasks"
    _write(folder, "my-retrieval", GOOD)
    cfg = load_task("my-retrieval", include=[folder], data_root=tmp_path / "data",
                    overrides=["recall_at=[1, 2, 10]", "split=test", "dataset.annotations=other.json"])
    assert cfg.dataset["root"] == str(tmp_path / "data" / "mine")
    assert cfg.params["recall_at"] == [1, 2, 10] and cfg.dataset["split"] == "test"
    assert cfg.dataset["annotations"] == "other.json" and cfg.version == 3
    base = load_task("my-retrieval", include=[folder], data_root=tmp_path / "data")
    moved = load_task("my-retrieval", include=[folder], data_root=tmp_path / "elsewhere")
    assert base.config_sha256 == moved.config_sha256  # the data root is not part of the config identity
    assert base.config_sha256 != cfg.config_sha256


@pytest.mark.parametrize("body, match", [
    (GOOD.replace("groups: [custom]", "groups: [custom]\nextra: 1"), r"unknown key\(s\) \['extra'\]; valid keys"),
    (GOOD.replace("version: 3", "version: three"), "version must be an integer"),
    (GOOD.replace("name: my-retrieval", "name: other"), "must match the file name"),
    (GOOD.replace("type: retrieval", "type: retreival"), "Unknown task type 'retreival'.* Did you mean: retrieval"),
    (GOOD.replace("format: karpathy", "format: karpaty"), "Unknown dataset format 'karpaty'"),
    (GOOD.replace("recall_at: [1, 2]", "recall_at: [one]"), r"params.recall_at: expected int, found 'one'"),
    (GOOD.replace("split: val", "split: val, colour: red"), r"dataset: unknown key\(s\) \['colour'\]"),
    (GOOD.replace("main_metric: t2i_R@2", "main_metric: t2i_R@5"), "main_metric 't2i_R@5' is not reported"),
    (GOOD.replace("main_metric: t2i_R@2", "main_metric: top1"), "main_metric 'top1' is not reported"),
    ("name: [unclosed", "invalid YAML at line 1"),
    (GOOD.replace("params: {recall_at: [1, 2]}", "params: [recall_at]"), "params must be a mapping.* found list"),
    (GOOD.replace("format: karpathy, root: \"${data_root}/mine\", annotations: ann.json, split: val",
                  "format: imagefolder, root: \"${data_root}/mine\""),
     "task type 'retrieval' needs a retrieval dataset, but format 'imagefolder' reads classification data; "
     "formats that fit: .*coco_captions.*karpathy"),
])
def test_invalid_task_yaml(tmp_path, body, match):
    folder = tmp_path / "t"
    _write(folder, "my-retrieval", body)
    with pytest.raises((ConfigError, UnknownNameError), match=match):
        load_task("my-retrieval", include=[folder], data_root=tmp_path)


def test_config_hash_ignores_where_the_data_lives_and_speed_settings(tmp_path):
    """The hash is of the YAML as written: a data root inside another dataset key (sugarcrepe's
    image_dir) does not enter it, nor do settings that change only speed (block, stream)."""
    a = load_task("sugarcrepe", data_root=tmp_path / "a")
    b = load_task("sugarcrepe", data_root=tmp_path / "b")
    assert a.dataset["image_dir"] != b.dataset["image_dir"] and str(tmp_path / "a") in a.dataset["image_dir"]
    assert a.config_sha256 == b.config_sha256
    base = load_task("shapes-retrieval")
    assert load_task("shapes-retrieval", overrides=["block=7", "stream=true"]).config_sha256 == base.config_sha256
    for changed in ("backend=faiss", "per_sample=false", "recall_at=[1]", "split=val"):
        assert load_task("shapes-retrieval", overrides=[changed]).config_sha256 != base.config_sha256, changed


def test_missing_data_root_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARC_EVAL_DATA", raising=False)
    with pytest.raises(ConfigError, match=r"set SPARC_EVAL_DATA=DIR \(every command, pretrain included\) or pass "
                                          r"--data-root DIR"):
        load_task("coco-retrieval")
    monkeypatch.setenv("SPARC_EVAL_DATA", str(tmp_path))
    assert load_task("coco-retrieval").dataset["root"] == str(tmp_path / "coco")


def test_suites_and_groups(tmp_path):
    demo = load_suite("demo")
    assert "shapes-retrieval" in demo.tasks and demo.groups
    paper = load_suite("sparc-paper")
    assert "coco-retrieval" in paper.tasks and paper.not_supported
    folder = tmp_path / "t"
    _write(folder / "suites", "bad", "tasks: [shapes-retrieval, nonexistent]\n")
    with pytest.raises(ConfigError, match="task 'nonexistent' does not exist"):
        load_suite("bad", include=[folder])


def test_metric_registry_families_and_direction():
    assert registry.get("i2t_R@7").higher_is_better
    assert registry.get("acc.swap_att").description.endswith("(subset: swap_att)")
    assert not registry.get("CHAIR_i").higher_is_better and not registry.get("CHAIR_s").higher_is_better
    assert registry.better("CHAIR_s", 3.0, 5.0) and registry.better("top1", 5.0, 3.0)
    assert registry.get("CIDEr").high == 1000.0
    with pytest.raises(UnknownNameError):
        registry.get("accuracy_at_moon")


def test_built_wheel_ships_the_task_yamls(tmp_path):
    out = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                          str(REPO)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("sparc_eval-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml_file in (REPO / "tasks").rglob("*.yaml"):
        assert f"sparc_eval/_tasks/{yaml_file.relative_to(REPO / 'tasks')}" in names
    assert "sparc_eval/open_clip_configs/ViT-Tiny-8-64.json" in names
    # A non-editable install finds its tasks from site-packages.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    probe = ("import sparc_eval.tasks as t; p = t.shipped_dir(); "
             "print(p); print(sorted(t.task_files()))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert found.returncode == 0, found.stderr
    assert str(target) in found.stdout.splitlines()[0] and "coco-retrieval" in found.stdout
