"""Many continuations of a few shared prefixes, run without copying the prefixes' keys and values to every row.

Retrieval by likelihood scores every caption of a gallery against every image: the row for (image i, caption b) is

    [ visual tokens of image i ][ prompt ][ caption b ]
      the prefix: the same for all B captions of image i     the continuation: the same for all I images

The prefixes run once (I rows, into a `KVCache`). A plain KV cache then needs one row per (image, caption) pair, so
the prefix's keys and values were copied into I x B rows (`KVCache.reorder`): at Qwen3-0.6B's size 28 layers x
keys and values x 8 heads x 128 x ~38 positions (the prefix and room for the caption), ~8.7 MB a pair in fp32,
written and read again at every pass.

Here each layer's attention is split into the two parts of the key sequence instead, as Hydragen does (Juravsky et
al. 2024, "Hydragen: High-Throughput LLM Inference with Shared Prefixes", https://arxiv.org/abs/2402.05099):

    scores against the prefix    q [I, B, ..., S, hd] x prefix keys [I, ..., P, hd]  -> [I, B, ..., S, P]
    scores against its own text  q [I, B, ..., S, hd] x own keys    [I, B, ..., S, hd] -> [I, B, ..., S, S] (causal)
    softmax over both together (one row of P + S scores), then probabilities x values, part by part.

The first product is one batched matmul per image whose rows are all B captions' queries: the prefix's keys are
read once per image, never copied. The softmax over the concatenated scores is the same softmax plain attention
takes over [prefix ; text], so the result equals running every row after its own copy of the prefix (a test checks
it). Continuations are right-padded; padding comes after every real token, so causal attention never lets a real
token see it, and no padding mask is needed.

Read next: `bridge/vlm.py` (`shared_prefix_log_likelihood` calls it), `evaluation/evaluate.py` (retrieval).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .model import rope_cos_sin, rope_inverse_frequencies

if TYPE_CHECKING:
    from .model import KVCache, Qwen3Attention, Qwen3ForCausalLM


def continuation_hidden_states(model: Qwen3ForCausalLM, prefix: KVCache, embeds: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states [I, B, S, d] of B continuations `embeds` [I, B, S, d] of each of I cached prefixes.

    `prefix` holds the I prefixes' keys and values (batch I, `prefix.length` positions, as `hidden_states` with a
    `kv_cache` leaves them); it is only read. Row (i, b) equals running prefix i then embeds[i, b] as one sequence.
    """
    I, B, S, d = embeds.shape  # noqa: E741 (I images, as in the docstring)
    P, config = prefix.length, model.config
    positions = torch.arange(P, P + S, device=embeds.device)[None]  # [1, S]: the continuation follows its prefix
    inv_freq = rope_inverse_frequencies(config.head_dim, config.rope_theta, embeds.device)
    cos, sin = rope_cos_sin(positions, inv_freq, embeds.dtype)  # [1, S, head_dim] each, the same for every row
    causal = torch.ones(S, S, dtype=torch.bool, device=embeds.device).tril()  # [S, S]: query t sees keys <= t
    x = embeds.reshape(I * B, S, d)  # [I*B, S, d]: row i*B + b is continuation b of prefix i
    for layer in model.model.layers:
        i = layer.self_attn.layer_idx
        keys, values = prefix.k[i][:, :, :P], prefix.v[i][:, :, :P]  # [I, KV, P, hd]: read, never copied
        x = x + _attention(layer.self_attn, layer.input_layernorm(x), cos, sin, keys, values, causal, I)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.model.norm(x).view(I, B, S, d)


def _attention(
    attn: Qwen3Attention,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    prefix_k: torch.Tensor,
    prefix_v: torch.Tensor,
    causal: torch.Tensor,
    I: int,  # noqa: E741
) -> torch.Tensor:
    """Qwen3Attention.forward for rows grouped by prefix: x [I*B, S, d] -> [I*B, S, d] (same projections, QK-norm,
    RoPE and grouped-query heads), attending to the row's prefix and to its own causal past."""
    IB, S, _ = x.shape
    B, H, KV, hd = IB // I, attn.num_heads, attn.num_kv_heads, attn.head_dim
    G = H // KV  # query heads per key/value head: query head h reads key/value head h // G
    q, k, v = attn.qkv(x, cos, sin)  # [I*B, H, S, hd], [I*B, KV, S, hd], [I*B, KV, S, hd]
    q = q.reshape(I, B, KV, G, S, hd) * hd**-0.5  # scaled as scaled_dot_product_attention scales
    k, v = k.reshape(I, B, KV, S, hd), v.reshape(I, B, KV, S, hd)

    to_prefix = torch.einsum("ibkgsd,ikpd->ibkgsp", q, prefix_k)  # [I, B, KV, G, S, P]: one matmul per image
    to_self = torch.einsum("ibkgsd,ibktd->ibkgst", q, k).masked_fill(~causal, float("-inf"))  # [I, B, KV, G, S, S]
    P = prefix_k.shape[2]
    probs = torch.cat([to_prefix, to_self], dim=-1).float().softmax(dim=-1).to(v.dtype)  # [I, B, KV, G, S, P + S]
    out = torch.einsum("ibkgsp,ikpd->ibkgsd", probs[..., :P], prefix_v) + torch.einsum(
        "ibkgst,ibktd->ibkgsd", probs[..., P:], v
    )  # [I, B, KV, G, S, hd]
    out = out.reshape(IB, H, S, hd).transpose(1, 2).reshape(IB, S, H * hd)  # heads h = kv * G + g, as in q
    return attn.o_proj(out)
