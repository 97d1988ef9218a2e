"""bench/gpu_check.sh, the GPU check, kept from rotting between GPU runs: its CPU dry run (``--device cpu
--tiny``: tiny sizes, gloo instead of NCCL) goes through every unit with the real code (training steps,
the CLI on a bundled checkpoint, pretraining under torchrun killed and resumed, the cost children,
throughput) and must write every row of the table; a unit that overruns its timeout is killed with the
processes it started (torchrun's workers included) and its rows read FAIL with the reason."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"


def _gpu_check():
    if "gpu_check" not in sys.modules:  # bench/ is not a package; dataclasses need the module registered
        spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


def _env() -> dict:
    return {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, shapes_root):
    """One CPU dry run of both stages (the session's shapes world is reused through SPARC_EVAL_CACHE)."""
    folder = tmp_path_factory.mktemp("gpu-check")
    out = folder / "table.json"
    proc = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--work", str(folder / "work"),
                           "--out", str(out)], capture_output=True, text=True, env=_env(), cwd=REPO, timeout=900)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_dry_run_writes_every_row_of_both_stages(dry_run):
    proc, doc = dry_run
    units = _gpu_check().UNITS
    expected = [check for _, _, _, checks in units.values() for check in checks]
    assert [r["check"] for r in doc["rows"]] == expected
    assert {r["stage"] for r in doc["rows"]} == {"quick", "full"}
    assert set(doc["stages"]) == {"quick", "full"} and all(v["seconds"] > 0 for v in doc["stages"].values())
    assert doc["schema"] == "sparc-eval-gpu-check/1" and doc["device"] == "cpu" and doc["tiny"] is True
    for r in doc["rows"]:  # the printed table names every check
        assert r["check"] in proc.stdout


def test_dry_run_rows_pass_or_say_why_not(dry_run):
    proc, doc = dry_run
    by = {r["check"]: r for r in doc["rows"]}
    failed = {c: r["detail"] for c, r in by.items() if r["status"] == "FAIL"}
    assert not failed and proc.returncode == 0, failed
    for check in ("imports.source", "step.sparc.fp32", "step.sparc.bf16", "step.clip.fp32", "step.clip.bf16",
                  "eval.shapes-retrieval", "pretrain.torchrun", "pretrain.kill-resume", "nccl.ddp"):
        assert by[check]["status"] == "PASS", (check, by[check]["detail"])
    for r in doc["rows"]:  # a row not run says why
        if r["status"] == "SKIP":
            assert r["detail"], r
    assert "needs CUDA" in by["step.sparc.fp16"]["detail"]
    # real values: bf16 within 2% of fp32, the resumed run ends where the uninterrupted one did (CPU: exactly)
    assert 0 <= by["step.sparc.bf16"]["data"]["rel"] <= 0.02
    assert by["pretrain.kill-resume"]["data"]["rel"] == 0.0
    assert by["pretrain.kill-resume"]["data"]["killed_after_checkpoint"] >= 4
    assert by["cost.sparc-clip.time"]["value"] > 0 and by["eval.end-to-end"]["value"] > 0
    assert by["env.tf32"]["data"]["tf32"]["torch.backends.cuda.matmul.allow_tf32"] is False


def _processes_naming(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(cmdline)
    return found


def _stage_then_report(work: Path, out: Path, *stage_args: str) -> tuple[int, list[dict]]:
    common = ["--device", "cpu", "--tiny", "--work", str(work)]
    subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "stage", *stage_args, *common],
                   capture_output=True, text=True, env=_env(), cwd=REPO, timeout=120, check=True)
    report = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "report", *common, "--out", str(out)],
                            capture_output=True, text=True, env=_env(), cwd=REPO, timeout=60)
    return report.returncode, json.loads(out.read_text())["rows"]


def test_pretraining_out_of_time_is_killed_with_torchruns_workers(tmp_path, shapes_root):
    code, rows = _stage_then_report(tmp_path / "work", tmp_path / "t.json", "full", "--only", "pretrain",
                                    "--unit-timeout", "12")
    assert code == 1  # a FAIL row
    assert [r["check"] for r in rows] == ["pretrain.torchrun", "pretrain.kill-resume"]
    assert all(r["status"] == "FAIL" and "timed out" in r["detail"] for r in rows), rows
    # torchrun starts its workers in their own sessions: they (and their DataLoader workers) must be gone too
    assert not _processes_naming(str(tmp_path / "work"))


def test_a_unit_over_its_timeout_fails_its_rows_with_the_reason(tmp_path):
    code, rows = _stage_then_report(tmp_path / "work", tmp_path / "t.json", "quick", "--only", "basics",
                                    "--unit-timeout", "1")
    expected = _gpu_check().UNITS["basics"][3]
    assert code == 1 and [r["check"] for r in rows] == expected
    # the rows it wrote before the kill stay; the others (at least the training steps, seconds of work) say why
    failed = [r for r in rows if r["status"] == "FAIL"]
    assert failed and failed[-1]["check"] == "step.clip.fp16"
    assert all("unit basics timed out after 1" in r["detail"] for r in failed), failed
    assert not _processes_naming(str(tmp_path / "work"))
