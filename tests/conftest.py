"""Shared fixtures: tiny random Qwen3 checkpoints written by transformers, and the real tokenizer when present."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# OpenMP threads that wait by spinning make small models 10-20x slower when the CPU is shared (a busy CI machine,
# subprocesses of the tests): let them sleep instead. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `import weights_loader`, `import train` from the repo root

QWEN3_TOKENIZER_DIR = REPO.parent / "shared" / "qwen3-tokenizer"


def tiny_qwen3_config(**overrides):
    """The tests' small Qwen3Config: 2 blocks of width 32, 4 query and 2 key/value heads of 8, vocabulary 64."""
    from tiny_decoder import Qwen3Config

    shape = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    return Qwen3Config(**{**shape, **overrides})


# The order in which `make test`'s two workers are handed the files (pytest-xdist's `--dist loadfile` with
# `--no-loadscope-reorder` keeps it): the longest first, so that the last files handed out are short and the two
# workers finish together. The first two start at once on different workers: test_train.py builds the demo run that
# other files wait for (about a minute) while the notebooks, which need none of it, run beside it. Notebook 05 reads
# the pretrained demo LM that test_experiments.py builds, so it comes later. Files not named follow in name order.
SCHEDULE = [
    "test_train.py",
    "test_notebooks.py",
    "test_experiments.py",
    "test_preemption.py",
    "test_page.py",
    "test_decoder.py",
    "test_qwen3_sizes.py",
    "test_explain.py",
    "test_notebooks_training.py",
    "test_distributed.py",
    "test_hub.py",
    "test_caption.py",
    "test_weights_loader.py",
    "test_vision.py",
    "test_memory.py",
]


def pytest_collection_modifyitems(items):
    """Files in SCHEDULE's order. Every test that needs the session's demo run or its data cache is slow (it trains,
    or builds the shapes set and its features first); `make test-fast` skips them."""
    rank = {name: i for i, name in enumerate(SCHEDULE)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SCHEDULE)))  # stable: a file's tests keep their order
    for item in items:
        if {"trained_demo", "session_cache"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def colours_in(text: str) -> set[str]:
    """The shapes set's colour names that `text` (a caption) says."""
    from data.shapes import COLOURS

    words = set(text.lower().replace(",", " ").split())
    return {c for c in COLOURS if c in words}


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker id ("gw0", "gw1", ...), or "master" without xdist (its own fixture when installed)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


@pytest.fixture()
def one_thread():
    """One torch thread for the test, restored after: tiny models run fastest so on a small shared CPU, and float sums
    come out bit-identical to those of forked children, which run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def qwen3_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer.json beside the repo (../shared/qwen3-tokenizer), or skip."""
    if not (QWEN3_TOKENIZER_DIR / "tokenizer.json").exists():
        pytest.skip(f"the real Qwen3 tokenizer is not at {QWEN3_TOKENIZER_DIR}")
    return QWEN3_TOKENIZER_DIR


def hf_qwen3_config(**overrides):
    """A transformers Qwen3Config for a tiny model, with head_dim != hidden_size // num_attention_heads."""
    transformers = pytest.importorskip("transformers")
    kwargs = dict(
        vocab_size=256,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,  # GQA ratio 3
        head_dim=20,  # 6 * 20 = 120 != 48
        rms_norm_eps=1e-6,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        attention_dropout=0.0,
    )
    kwargs.update(overrides)
    rope_theta = kwargs.pop("rope_theta")
    config = transformers.Qwen3Config(**kwargs, rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    config._attn_implementation = "eager"
    return config


def make_hf_model(seed: int = 0, **overrides):
    """A random transformers Qwen3ForCausalLM in fp32 whose RMSNorm weights are randomised too.

    Norm weights start at 1, which would hide a norm loaded into the wrong place; random values expose it.
    """
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(hf_qwen3_config(**overrides)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """Factory: save a random tiny transformers Qwen3 with save_pretrained; returns (directory, hf_model)."""

    def build(seed: int = 0, max_shard_size: str | None = None, **overrides):
        model = make_hf_model(seed, **overrides)
        path = tmp_path / f"qwen3-tiny-{seed}-{len(list(tmp_path.iterdir()))}"
        kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
        model.save_pretrained(path, **kwargs)
        return path, model

    return build


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory, worker_id) -> Path:
    """A folder of this test session common to all its workers (pytest-xdist gives each worker a basetemp of its own,
    basetemp/popen-gwN/; their parent is shared). What goes here is built once per session, under a file lock."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def session_cache(shared_tmp) -> Path:
    """The session's data cache (train.py's --cache-dir): the shapes set, encoder features, the pretrained demo LM.
    Every entry is built under its own file lock (runtime/files.py), so tests and notebooks on either worker may
    build into it at once: one builds, the other waits and reuses. The demo run of `trained_demo` uses it too."""
    return shared_tmp / "demo" / "cache"


@pytest.fixture(scope="session")
def trained_demo(shared_tmp, session_cache):
    """One short demo training run per test session (shapes set, tiny decoder, tiny encoder), shared by the tests
    that need a trained model (train.py --test, caption.py, explain, the hub, the page); those that only need the
    data take `session_cache`. Returns (output_dir, cache_dir, checkpoint path); what the run printed is in
    output_dir / "console.txt".

    With pytest-xdist (`make test` runs two workers) the workers share one run: the first to take the lock trains,
    the other waits and reads it (the recipe of pytest-xdist's docs, "Making session-scoped fixtures execute only
    once"). Tests that write next to it (`--test` metrics) are in one file, and `--dist loadfile` keeps a file's
    tests on one worker."""
    import contextlib
    import io

    from filelock import FileLock

    import train
    from checkpoints.store import find_checkpoint

    root = shared_tmp / "demo"
    output_dir, cache_dir = root / "models", session_cache
    with FileLock(str(shared_tmp / "demo.lock")):
        if not (root / "done").exists():
            printed = io.StringIO()
            with contextlib.redirect_stderr(printed):  # train.py's console writes to stderr
                code = train.main(
                    ["--demo", "--output-dir", str(output_dir), "--cache-dir", str(cache_dir), "--wandb", "disabled"]
                    + ["--epochs", "1", "--eval-images", "40", "--gallery-size", "20", "--run-name", "session-demo"]
                )
            (output_dir / "console.txt").write_text(printed.getvalue())
            assert code == 0, printed.getvalue()[-2000:]
            (root / "done").touch()
    return output_dir, cache_dir, find_checkpoint(output_dir, {"encoder": "tiny"})


@pytest.fixture(scope="session")
def demo_scenes(trained_demo) -> list[tuple[Path, dict]]:
    """The held-out images of the session's demo run (the test split of its checkpoint's own data settings), each
    with its scene from the shapes set's annotation file: [(image path, {"shapes": [{"kind", "colour", ...}]})]."""
    import json

    from data import load_dataset
    from data.shapes import ANNOTATION_FILE

    _, cache_dir, checkpoint = trained_demo
    data = json.loads(checkpoint.with_suffix(".json").read_text())["data"]
    splits, _ = load_dataset(data["source"], cache_dir=cache_dir, split=data["split"], seed=data["seed"])
    folder = splits.test[0].path.parents[1]  # the shapes set: images/ and its annotation file
    scenes = {e["filename"]: e["scene"] for e in json.loads((folder / ANNOTATION_FILE).read_text())["images"]}
    return [(r.path, scenes[r.path.name]) for r in splits.test]
