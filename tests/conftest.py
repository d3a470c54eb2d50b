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


def pytest_collection_modifyitems(items):
    """Every test that needs the session's demo run is slow (it trains first); `make test-fast` skips them."""
    for item in items:
        if "trained_demo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


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
def trained_demo(tmp_path_factory, worker_id):
    """One short demo training run per test session (shapes set, tiny decoder, tiny encoder), shared by the tests
    of train.py, caption.py and the notebooks. Returns (output_dir, cache_dir, checkpoint path); what the run
    printed is in output_dir / "console.txt".

    With pytest-xdist (`make test` runs two workers) the workers share one run: the first to take the lock trains,
    the other waits and reads it (the recipe of pytest-xdist's docs, "Making session-scoped fixtures execute only
    once"). Tests that write next to it (`--test` metrics) are in one file, and `--dist loadfile` keeps a file's
    tests on one worker."""
    import contextlib
    import io

    from filelock import FileLock

    import train
    from checkpoints.store import find_checkpoint

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # xdist: basetemp/popen-gwN/ -> basetemp/, common to the workers
        shared = shared.parent
    root = shared / "demo"
    output_dir, cache_dir = root / "models", root / "cache"
    with FileLock(str(shared / "demo.lock")):
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
