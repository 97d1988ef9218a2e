"""Run ``sparc_eval.hub`` calls in a subprocess against the Hub stand-in (huggingface_hub reads HF_ENDPOINT and
HF_HUB_OFFLINE at import, so the calls cannot share the test process).

``run_hub(hub, hf_home, calls, ...)`` runs ``calls`` (``(function name, args, kwargs)``) in one fresh process
and returns, per call, ``{"ok": <record>}`` or ``{"error": <class name>, "message": ..., "exit_code": ...}``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_DRIVER = r"""
import json, sys
from sparc_eval import hub
from sparc_eval.errors import SparcEvalError

def plain(value):
    if hasattr(value, "record"):
        out = value.record()
        if hasattr(value, "path"):
            out["path"] = str(value.path)
        if hasattr(value, "folder"):
            out["folder"] = str(value.folder)
        return out
    return value

results = []
for name, args, kwargs in json.loads(sys.argv[1]):
    try:
        results.append({"ok": plain(getattr(hub, name)(*args, **kwargs))})
    except SparcEvalError as e:
        results.append({"error": type(e).__name__, "message": str(e), "exit_code": e.exit_code})
print(json.dumps(results))
"""


def run_hub(hub, hf_home: Path, calls: list, *, offline: bool = False, token: str | None = None) -> list[dict]:
    env = hub.env(hf_home, offline=offline, token=token)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(calls)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
