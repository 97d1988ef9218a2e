"""The one plugin registry: built-ins by lazy reference, installed plugins through entry points (a real
``*.dist-info`` on ``sys.path``), base-class and name checks, and the registries built on it."""
from __future__ import annotations

import sys
import textwrap

import pytest

from sparc_eval.errors import UnknownNameError
from sparc_eval.registry import Registry


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """An installed distribution ``demo_plugin`` with entry points in three of our groups."""
    (tmp_path / "demo_plugin.py").write_text(textwrap.dedent('''
        from sparc_eval.task_types import TaskType

        class Echo(TaskType):
            name = "echo"
            dataset_kind = "retrieval"

        class Misnamed(TaskType):
            name = "something_else"
            dataset_kind = "retrieval"

        def load(spec, pretrained=None, **kw):
            return ("loaded", spec)

        NOT_A_TASK = 3
    '''))
    info = tmp_path / "demo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent('''
        [sparc_eval.task_types]
        echo = demo_plugin:Echo
        misnamed = demo_plugin:Misnamed
        number = demo_plugin:NOT_A_TASK
        retrieval = demo_plugin:Echo

        [sparc_eval.models]
        demo = demo_plugin:load
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("demo_plugin", None)


def test_builtins_resolve_lazily_and_unknown_names_suggest():
    reg = Registry("thing", "sparc_eval.no_such_group", {"json": "json:dumps", "path": "os.path:join"})
    assert reg.names() == ["json", "path"] and "json" in reg and "yaml" not in reg
    import json

    assert reg.get("json") is json.dumps
    with pytest.raises(UnknownNameError, match="Unknown thing 'jsn'.*Did you mean: json"):
        reg.get("jsn")


def test_plugins_join_through_entry_points_and_are_checked(plugin_dist):
    from sparc_eval.models import LOADERS, load_model
    from sparc_eval.task_types import TASK_TYPES, TaskType

    assert TASK_TYPES.get("echo").name == "echo" and issubclass(TASK_TYPES.get("echo"), TaskType)
    with pytest.raises(TypeError, match="task type 'misnamed' .* calls itself 'something_else'"):
        TASK_TYPES.get("misnamed")
    with pytest.raises(TypeError, match="task type 'number' .* is not a TaskType"):
        TASK_TYPES.get("number")
    # a plugin cannot replace a built-in
    assert TASK_TYPES.references()["retrieval"] == "sparc_eval.task_types.retrieval:Retrieval"
    assert "demo" in LOADERS.names()
    assert load_model("demo:anything") == ("loaded", "demo:anything")


def test_every_builtin_registry_resolves_all_its_entries():
    from sparc_eval.data.base import READERS
    from sparc_eval.models import LOADERS
    from sparc_eval.pretrain.losses import LOSSES
    from sparc_eval.task_types import TASK_TYPES
    from sparc_eval.transfer.config import SEG_HEADS

    sizes = {name: len(reg.all()) for name, reg in (("readers", READERS), ("loaders", LOADERS), ("losses", LOSSES),
                                                    ("task types", TASK_TYPES), ("heads", SEG_HEADS))}
    assert sizes == {"readers": 19, "loaders": 4, "losses": 6, "task types": 11, "heads": 2}
    assert all(r.format == name for name, r in READERS.all().items())
