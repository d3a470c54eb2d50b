"""The real Qwen/Qwen3-0.6B-Base weights, when a local copy is available (they cannot be downloaded here).

Set QWEN3_0_6B_BASE_DIR to a directory holding the hub files (`hf download Qwen/Qwen3-0.6B-Base --local-dir DIR`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from weights_loader import load_qwen3, load_tokenizer

REAL = os.environ.get("QWEN3_0_6B_BASE_DIR")
pytestmark = pytest.mark.skipif(
    not REAL or not Path(REAL).is_dir(), reason="QWEN3_0_6B_BASE_DIR does not point at a local Qwen3-0.6B-Base copy"
)


def test_real_weights_logits_and_greedy_continuation_match_transformers():
    transformers = pytest.importorskip("transformers")
    tok = load_tokenizer(REAL)
    assert tok.eos_id == 151_643
    ours = load_qwen3(REAL)
    theirs = transformers.Qwen3ForCausalLM.from_pretrained(REAL, dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        mine, ref = ours(ids), theirs(ids).logits
    assert (mine - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert torch.equal(mine[0, -1, :1000].topk(5).indices, ref[0, -1, :1000].topk(5).indices)
    new = ours.generate(ids, max_new_tokens=16, eos_token_id=tok.eos_id)
    expected = theirs.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1] :]
    assert new[0, : len(expected)].tolist() == expected.tolist()
    assert "Paris" in tok.decode(new[0].tolist())
