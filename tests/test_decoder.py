"""Our Qwen3 against transformers' Qwen3: components, logits, generation, KV cache.

Every model here is random and tiny (built by transformers, saved with `save_pretrained`, loaded by our loader),
except one test at the full Qwen3-0.6B configuration. Logits must agree within 1e-4 relative to their scale in fp32.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import hf_qwen3_config

from tiny_decoder import Qwen3Config
from tiny_decoder.model import RMSNorm, apply_rope, rope_cos_sin, rope_inverse_frequencies, rotate_half
from weights_loader import load_qwen3


def transformers_qwen3():
    """transformers' Qwen3 modeling module, imported by the tests that use it (the reference; skip without it).
    Not at the top of the file: its 3 s import would then be paid at collection by every pytest worker."""
    return pytest.importorskip("transformers.models.qwen3.modeling_qwen3")


def assert_close_logits(ours: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-4) -> None:
    scale = ref.abs().max().item()
    err = (ours - ref).abs().max().item()
    assert err <= rtol * max(scale, 1e-6), f"max |diff| {err:.3g} > {rtol} x scale {scale:.3g}"


# ----------------------------------------------------------------------------------------------------- components


def test_rmsnorm_matches_transformers():
    theirs = transformers_qwen3().Qwen3RMSNorm(40, eps=1e-6)
    ours = RMSNorm(40, eps=1e-6)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(theirs.weight)
    x = torch.randn(3, 5, 40) * 7
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    xb = x.bfloat16()
    torch.testing.assert_close(ours.bfloat16()(xb), theirs.bfloat16()(xb), rtol=0, atol=0)


def test_rope_matches_transformers_and_rotates_halves():
    config = hf_qwen3_config(head_dim=16)
    hf_qwen3 = transformers_qwen3()
    rotary = hf_qwen3.Qwen3RotaryEmbedding(config)
    q, k = torch.randn(2, 6, 9, 16), torch.randn(2, 2, 9, 16)
    positions = torch.arange(9).expand(2, 9) + torch.tensor([[0], [4]])
    cos_ref, sin_ref = rotary(q, positions)
    cos, sin = rope_cos_sin(positions, rope_inverse_frequencies(16, 1_000_000.0), q.dtype)
    torch.testing.assert_close(cos, cos_ref)
    torch.testing.assert_close(sin, sin_ref)
    q_ref, k_ref = hf_qwen3.apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_ref)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_ref)
    # rotate_half pairs dimension i with i + d/2 (not 2i with 2i+1).
    x = torch.arange(8.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]


def test_rope_preserves_norm_and_relative_positions():
    inv = rope_inverse_frequencies(32, 10_000.0)
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(pq: int, pk: int) -> float:
        cq, sq = rope_cos_sin(torch.tensor([[pq]]), inv, torch.float32)
        ck, sk = rope_cos_sin(torch.tensor([[pk]]), inv, torch.float32)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

    cq, sq = rope_cos_sin(torch.tensor([[5]]), inv, torch.float32)
    torch.testing.assert_close(apply_rope(q, cq, sq).norm(), q.norm())
    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-4)  # depends on 7 - 3 only


# ----------------------------------------------------------------------------------------------------- logits parity


@pytest.mark.parametrize(
    "overrides",
    [
        dict(tie_word_embeddings=True),
        dict(tie_word_embeddings=False),
        dict(num_attention_heads=8, num_key_value_heads=2, head_dim=12),  # GQA ratio 4
        dict(num_attention_heads=4, num_key_value_heads=4, head_dim=32),  # no grouping (MHA)
        dict(num_attention_heads=6, num_key_value_heads=1, head_dim=8),  # multi-query
    ],
    ids=["tied", "untied", "gqa4", "mha", "mqa"],
)
def test_logits_match_transformers(tiny_checkpoint, overrides):
    path, hf = tiny_checkpoint(**overrides)
    ours = load_qwen3(path)
    assert ours.config.tie_word_embeddings == overrides.get("tie_word_embeddings", True)
    ids = torch.randint(0, 256, (2, 17))
    with torch.no_grad():
        assert_close_logits(ours(ids), hf(ids).logits)


def test_sharded_checkpoint_matches_transformers(tiny_checkpoint):
    path, hf = tiny_checkpoint(max_shard_size="40KB", tie_word_embeddings=False)
    assert (path / "model.safetensors.index.json").exists()
    assert len(list(path.glob("model-*.safetensors"))) > 1
    ours = load_qwen3(path)
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        assert_close_logits(ours(ids), hf(ids).logits)


def test_padding_mask_inputs_embeds_and_selected_logits(tiny_checkpoint):
    path, hf = tiny_checkpoint()
    ours = load_qwen3(path)
    ids = torch.randint(0, 256, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :4] = 0  # second row is left-padded by 4
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, attention_mask=mask)  # positions derived from the mask
        real = mask.bool()
        assert_close_logits(got[real], ref[real])
        # The same sequence through inputs_embeds gives the same logits.
        embeds = ours.model.embed_tokens(ids)
        assert_close_logits(ours(inputs_embeds=embeds), ours(ids), rtol=1e-6)
        # Logits at selected positions only: [N, vocab] in row-major order.
        keep = torch.zeros(2, 10, dtype=torch.bool)
        keep[0, 3], keep[1, 7], keep[1, 9] = True, True, True
        selected = ours(ids, logits_to_keep=keep)
        assert selected.shape == (3, 256)
        assert_close_logits(selected, ours(ids)[keep], rtol=1e-6)
        assert_close_logits(ours(ids, logits_to_keep=1), ours(ids)[:, -1:], rtol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    model = load_qwen3(path).train()
    ids = torch.randint(0, 256, (2, 8))

    def grads():
        model.zero_grad()
        model(ids).logsumexp(-1).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    model.gradient_checkpointing = True
    checkpointed = grads()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name])


@pytest.mark.slow
def test_full_qwen3_0_6b_configuration_matches_transformers(tmp_path):
    """Random weights at the real size: 28 layers, d=1024, 16x128 query heads, 8 KV heads, 151,936 rows."""
    ref = Qwen3Config.qwen3_0_6b()
    hf_config = hf_qwen3_config(
        vocab_size=ref.vocab_size,
        hidden_size=ref.hidden_size,
        intermediate_size=ref.intermediate_size,
        num_hidden_layers=ref.num_hidden_layers,
        num_attention_heads=ref.num_attention_heads,
        num_key_value_heads=ref.num_key_value_heads,
        head_dim=ref.head_dim,
        max_position_embeddings=ref.max_position_embeddings,
        tie_word_embeddings=True,
    )
    # transformers' own initialisation of 0.6B parameters takes ~12 s here; any random values test the mapping as
    # well, so skip it (`no_init_weights`, what `from_pretrained` uses) and draw them at once: uniform with the std of
    # its normal(0, 0.02), norm gains in [0.5, 1.5]. Skipping it also skips tying: tie the head explicitly.
    from transformers.initialization import no_init_weights

    torch.manual_seed(0)
    with no_init_weights():
        hf = transformers_qwen3().Qwen3ForCausalLM(hf_config).eval()
    hf.tie_weights()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            else:
                p.uniform_(-0.02 * 3**0.5, 0.02 * 3**0.5)
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    # Saved in bfloat16, as the release is (and half the bytes to write). Only the parameters are rounded: a buffer such
    # as RoPE's inverse frequencies stays fp32 in both models, as it does when either loads the release.
    for p in hf.parameters():
        p.data = p.data.to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    for p in hf.parameters():
        p.data = p.data.float()  # the same values, exactly: the fp32 reference
    ours = load_qwen3(tmp_path)  # bfloat16 on disk -> float32
    assert ours.config == dataclasses.replace(ref, eos_token_id=None)  # the tiny save has no token ids
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in hf.parameters()) == 596_049_920
    ids = torch.randint(0, 151_669, (1, 8))
    with torch.no_grad():
        assert_close_logits(ours(ids), hf(ids).logits)


# ----------------------------------------------------------------------------------------------------- generation


def test_greedy_generation_matches_transformers(tiny_checkpoint):
    path, hf = tiny_checkpoint(vocab_size=512)
    ours = load_qwen3(path)
    prompt = torch.randint(0, 512, (1, 6))
    theirs = hf.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=32,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )[:, prompt.shape[1] :]
    mine = ours.generate(prompt, max_new_tokens=32)
    assert mine.shape == (1, 32)
    assert mine.tolist() == theirs.tolist()


def test_kv_cache_decoding_equals_full_recomputation(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    model = load_qwen3(path)
    seq = torch.randint(0, 256, (2, 14))
    with torch.no_grad():
        full = model(seq)  # [2, 14, V]: every position recomputed from scratch
        cache = model.new_kv_cache(2, 14)
        steps = [model(seq[:, :5], kv_cache=cache)]  # prefill 5 tokens
        for t in range(5, 14):  # then one token at a time
            steps.append(model(seq[:, t : t + 1], kv_cache=cache))
    assert cache.length == 14
    assert_close_logits(torch.cat(steps, dim=1), full, rtol=1e-5)


def test_batched_generation_of_different_lengths_equals_one_at_a_time(tiny_checkpoint):
    path, _ = tiny_checkpoint(vocab_size=512)
    model = load_qwen3(path)
    prompts = [torch.randint(0, 512, (n,)) for n in (3, 8, 5)]
    alone = [model.generate(p[None], max_new_tokens=12)[0] for p in prompts]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding
        ids[i, width - len(p) :] = p
        mask[i, width - len(p) :] = 1
    batched = model.generate(ids, attention_mask=mask, max_new_tokens=12)
    for i in range(3):
        assert batched[i].tolist() == alone[i].tolist()


def test_generation_from_embeddings_followed_by_text(tiny_checkpoint):
    """An image prefix arrives as embeddings: generating from embeddings equals generating from their ids."""
    path, _ = tiny_checkpoint(vocab_size=512)
    model = load_qwen3(path)
    ids = torch.randint(0, 512, (2, 7))
    with torch.no_grad():
        embeds = model.model.embed_tokens(ids)
    assert (
        model.generate(inputs_embeds=embeds, max_new_tokens=10).tolist()
        == model.generate(ids, max_new_tokens=10).tolist()
    )


def test_generation_stops_on_eos_and_pads(tiny_checkpoint):
    path, _ = tiny_checkpoint(vocab_size=512)
    model = load_qwen3(path)
    prompt = torch.randint(0, 512, (2, 5))
    free = model.generate(prompt, max_new_tokens=10)
    eos = int(free[0, 2])  # pretend the third token row 0 produces is end-of-text
    out = model.generate(prompt, max_new_tokens=10, eos_token_id=eos, pad_token_id=-1)
    assert out[0, :3].tolist() == free[0, :3].tolist()
    assert (out[0, 3:] == -1).all()
    if eos not in free[1].tolist():
        assert out[1].tolist() == free[1, : out.shape[1]].tolist()


def test_sampling_respects_top_k_top_p_and_seed(tiny_checkpoint):
    from tiny_decoder.generate import filter_logits

    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    assert torch.isfinite(filter_logits(logits, top_k=2)[0, :2]).all()
    probs = logits.softmax(-1)[0]  # 0.64, 0.24, 0.09, ...
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist()
    assert kept == [True, True, False, False, False] and probs[0] < 0.7 <= probs[:2].sum()

    path, _ = tiny_checkpoint(vocab_size=512)
    model = load_qwen3(path)
    prompt = torch.randint(0, 512, (2, 4))

    def sample(seed: int, **kw):
        g = torch.Generator().manual_seed(seed)
        return model.generate(prompt, max_new_tokens=16, do_sample=True, generator=g, **kw)

    assert torch.equal(sample(1, temperature=0.8), sample(1, temperature=0.8))
    assert not torch.equal(sample(1, temperature=5.0), sample(2, temperature=5.0))
    # top_k=1 is greedy whatever the temperature.
    assert torch.equal(sample(3, temperature=3.0, top_k=1), model.generate(prompt, max_new_tokens=16))
