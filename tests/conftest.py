"""Shared fixtures: an isolated cache folder, the shapes worlds, tiny random models saved on disk.

Everything is generated here: no weights or datasets are downloaded. The session cache folder
(``SPARC_EVAL_CACHE``) holds the standard shapes world (generated once per test session) and the
embedding cache; tests that check caching use their own cache folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_CUDA_DESELECTED: list = []


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run only where CUDA is available; elsewhere they are deselected (not skipped
    one by one) and the terminal summary says how many and why."""
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda:
        return
    import torch

    if not torch.cuda.is_available():
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if item.get_closest_marker("cuda") is None]
        _CUDA_DESELECTED[:] = cuda


def pytest_terminal_summary(terminalreporter):
    if _CUDA_DESELECTED:
        terminalreporter.write_line(f"{len(_CUDA_DESELECTED)} cuda tests deselected: no CUDA device on this machine "
                                    f"(run them where torch.cuda.is_available(), or bench/gpu_check.sh)")


TINY_OPEN_CLIP = "open_clip:ViT-Tiny-8-64"
SMALL_SPLITS = {"train": 48, "restval": 8, "val": 24, "test": 40}


def tasks_on(world: Path, folder: Path, names) -> Path:
    """Copies of shipped task YAMLs whose ``${shapes}`` is ``world`` (for --include-path)."""
    folder.mkdir()
    for name in names:
        text = (Path(__file__).resolve().parent.parent / "tasks" / f"{name}.yaml").read_text()
        (folder / f"{name}.yaml").write_text(text.replace("${shapes}", str(world)))
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Point the sparc-eval cache (shapes world, embeddings, file hashes) at a session folder."""
    root = tmp_path_factory.mktemp("sparc-eval-cache")
    old = os.environ.get("SPARC_EVAL_CACHE")
    os.environ["SPARC_EVAL_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("SPARC_EVAL_CACHE", None)
    else:
        os.environ["SPARC_EVAL_CACHE"] = old


@pytest.fixture(scope="session")
def shapes_root(_isolated_cache) -> Path:
    """The standard shapes world (what ``${shapes}`` in task YAMLs resolves to)."""
    from sparc_eval.data.synthetic import default_world

    return default_world()


def repo_tool(name: str):
    """A module of the repository's ``tools/`` folder (not a package), loaded by path."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demo_results(tmp_path_factory, shapes_root) -> tuple[Path, dict]:
    """Every bundled checkpoint and the untrained control on the demo suite under the model cards'
    conditions (CPU, one thread, seed 0), evaluated once per session by ``tools/checkpoints.py``'s
    ``demo_results``: (results folder, each checkpoint's results by folder name). Shared by the card
    check and the README demo-block check."""
    out = tmp_path_factory.mktemp("demo-results")
    return out, repo_tool("checkpoints").demo_results(out)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A small shapes world (120 images) for fast end-to-end tests; pass it with --param root=..."""
    from sparc_eval.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("small-world") / "shapes", SMALL_SPLITS, seed=1)


@pytest.fixture
def one_thread():
    """Run the test with torch on one thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli():
    from sparc_eval.cli import cli as group

    return group


def _hf_clip_tokenizer(folder: Path):
    """A transformers CLIPTokenizer with open_clip's BPE vocabulary (no download)."""
    import transformers
    from open_clip.tokenizer import SimpleTokenizer

    t = SimpleTokenizer()
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {names.get(k, k): v for k, v in t.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(t.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


@pytest.fixture(scope="session")
def hf_clip_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised transformers CLIPModel + processor saved with save_pretrained()."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("hf-clip")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=49408, max_position_embeddings=32, bos_token_id=49406, eos_token_id=49407,
                         pad_token_id=49407),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=8),
        projection_dim=32)
    model = transformers.CLIPModel(config).eval()
    tok = _hf_clip_tokenizer(folder)
    tok.model_max_length = 32
    ip = transformers.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    transformers.CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_siglip_dir(tmp_path_factory, small_world) -> Path:
    """A tiny random transformers SiglipModel with a sentencepiece tokenizer trained on shapes captions."""
    import sentencepiece as spm
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("hf-siglip")
    world = json.loads((small_world / "world.json").read_text())
    corpus = folder / "corpus.txt"
    corpus.write_text("".join(c + "\n" for s in world["scenes"] for c in s["captions"]))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "spm"), vocab_size=64, hard_vocab_limit=False,
                                   model_type="unigram", pad_id=1, eos_id=2, unk_id=0, bos_id=-1,
                                   minloglevel=2)
    tok = transformers.SiglipTokenizer(vocab_file=str(folder / "spm.model"), model_max_length=16)
    torch.manual_seed(0)
    config = transformers.SiglipConfig(
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                         vocab_size=tok.vocab_size, max_position_embeddings=16, pad_token_id=1, bos_token_id=None,
                         eos_token_id=2),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=8))
    model = transformers.SiglipModel(config).eval()
    ip = transformers.SiglipImageProcessor(size={"height": 64, "width": 64})
    transformers.SiglipProcessor(image_processor=ip, tokenizer=tok).save_pretrained(folder)
    model.save_pretrained(folder)
    corpus.unlink()
    return folder
