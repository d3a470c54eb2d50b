"""Qwen3, written out by hand: one file, top to bottom, the same model as Qwen3-0.6B-Base.

A decoder-only transformer turns token ids into next-token logits:

    ids ─ embed_tokens ─► [ block × num_hidden_layers ] ─ norm ─ lm_head ─► logits
    block(x):  x = x + attention(RMSNorm(x))          (pre-norm residual stream)
               x = x + SwiGLU-MLP(RMSNorm(x))

What makes it *Qwen3* rather than any decoder:
- RMSNorm (no mean subtraction, no bias) everywhere, computed in fp32.
- Grouped-query attention (GQA): 16 query heads share 8 key/value heads, halving the KV cache.
- QK-norm: a per-head RMSNorm on queries and keys, applied *before* RoPE. It keeps attention logits bounded.
- RoPE with base 1,000,000, rotating the two halves of each head (`rotate_half`), not adjacent pairs.
- head_dim (128) is not hidden_size / num_heads (1024 / 16 = 64): q_proj maps 1024 -> 2048, o_proj maps back.
- SwiGLU MLP: down(silu(gate(x)) * up(x)).
- The LM head is tied to the embedding matrix (151,936 rows; the tokenizer uses 151,669 of them).

Module names follow transformers' `Qwen3ForCausalLM` exactly (`model.layers.3.self_attn.q_proj.weight`, ...), so the
official safetensors load with an identity weight map (see `weights_loader.py`).

The attention weights themselves are returned only when asked, by `recording_attention` (at the end of the model
section): `explain/attention.py` draws them as maps over the image.

References:
- Qwen3 technical report, https://arxiv.org/abs/2505.09388
- RMSNorm: Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467
- RoPE: Su et al. 2021, https://arxiv.org/abs/2104.09864
- GQA: Ainslie et al. 2023, https://arxiv.org/abs/2305.13245
- SwiGLU: Shazeer 2020, https://arxiv.org/abs/2002.05202
- transformers `models/qwen3/modeling_qwen3.py`; rasbt's "Qwen3 from scratch" (LLMs-from-scratch, ch05/11)

Read next: `bridge/adapters.py` (image features become tokens this model reads), `weights_loader.py` (its weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import Qwen3Config

# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) * weight, computed in fp32 and cast back (as Qwen3 does)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inverse_frequencies(head_dim: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2: one rotation speed per pair of dimensions."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


def rope_cos_sin(
    position_ids: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of angle = position * inv_freq, for positions [B, T] -> two tensors [B, T, head_dim]."""
    freqs = position_ids[..., None].float() * inv_freq  # [B, T, head_dim/2]
    angles = torch.cat((freqs, freqs), dim=-1)  # [B, T, head_dim]: the same angle for dim i and dim i + head_dim/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (x[i], x[i + head_dim/2]) pair by its angle. x: [B, heads, T, head_dim]; cos/sin: [B, T, head_dim]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, head_dim], broadcast over heads
    return x * cos + rotate_half(x) * sin


class KVCache:
    """Preallocated keys and values of every layer, for incremental decoding.

    k[layer], v[layer]: [B, num_key_value_heads, max_length, head_dim]. `length` counts the positions filled so far;
    a forward pass of T new tokens writes positions [length, length + T) in every layer, then advances `length`.
    Preallocating avoids a `torch.cat` (and a copy of the whole cache) per generated token.
    """

    def __init__(
        self,
        config: Qwen3Config,
        batch_size: int,
        max_length: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (batch_size, config.num_key_value_heads, max_length, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values [B, kv_heads, T, head_dim]; return all of them so far."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache is full: {end} positions needed, {self.max_length} allocated")
        self.k[layer][:, :, self.length : end] = k
        self.v[layer][:, :, self.length : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows `index` (beam search: each surviving beam takes its parent's cache)."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
    """softmax(q kᵀ / √head_dim) over the keys each query may see: [B, H, T, S], in fp32.

    What `F.scaled_dot_product_attention` computes inside and never returns (its fused kernels never hold the
    [T, S] matrix). q: [B, H, T, hd]; k: [B, KV, S, hd], each key head shared by H / KV query heads (GQA, as
    `enable_gqa` broadcasts it); mask: bool [B or 1, 1, T, S], True where a query may attend, or None with
    `is_causal` for plain causal attention. Used only inside `recording_attention`.
    """
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # [B, H, S, hd]: query head h reads key head h // group
    scores = (q.float() @ k.float().transpose(-2, -1)) * q.shape[-1] ** -0.5  # [B, H, T, S]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif is_causal:
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool, device=scores.device).triu(1)  # key j > query i: not seen
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1)


class Qwen3Attention(nn.Module):
    """Grouped-query self-attention with QK-norm and RoPE."""

    # A list while `recording_attention` is active: each forward appends its attention weights [B, H, T, S] to it.
    # None otherwise, and then the only cost is this one test per forward.
    recorded: list[torch.Tensor] | None = None

    def __init__(self, config: Qwen3Config, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)  # one norm shared by all heads, over head_dim
        self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def qkv(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of `x` [B, T, d], ready to attend: q [B, H, T, hd], k and v [B, KV, T, hd].
        The one place they are made (`forward`, and `tiny_decoder/shared_prefix.py`'s retrieval path, use it)."""
        B, T, _ = x.shape
        # Project, split into heads, and normalise each head's query and key (QK-norm comes BEFORE RoPE).
        q = self.q_norm(self.q_proj(x).view(B, T, self.num_heads, self.head_dim))  # [B, T, H, hd]
        k = self.k_norm(self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim))  # [B, T, KV, hd]
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)  # [B, T, KV, hd]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)  # [B, H, T, hd], [B, KV, T, hd], [B, KV, T, hd]
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # [B, KV, past + T, hd]
        if self.recorded is not None:  # asked for (`recording_attention`): the weights, and the output from them
            weights = attention_weights(q, k, mask, is_causal=mask is None and T > 1)  # [B, H, T, S]
            self.recorded.append(weights)
            out = weights.to(v.dtype) @ v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        else:
            # GQA: scaled_dot_product_attention broadcasts each key/value head over its group of query heads.
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0,
                enable_gqa=self.num_kv_heads != self.num_heads,
            )  # [B, H, T, hd], scaled by 1/sqrt(head_dim)
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)  # [B, T, H*hd]
        return self.o_proj(out)


class Qwen3MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3DecoderLayer(nn.Module):
    """One pre-norm transformer block."""

    def __init__(self, config: Qwen3Config, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Qwen3Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = Qwen3MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# ---------------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------------


class Qwen3Model(nn.Module):
    """Embedding, the stack of blocks and the final norm: ids (or embeddings) -> hidden states."""

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Qwen3DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Qwen3ForCausalLM(nn.Module):
    """The decoder with its language-model head. `forward` returns next-token logits.

    Inputs:
    - `input_ids` [B, T] or `inputs_embeds` [B, T, hidden_size] (the vision bridge prepends image tokens this way).
    - `attention_mask` [B, T_total] with 1 for real tokens and 0 for padding, where T_total counts cached positions
      too. Without a mask every position is real and attention is plainly causal (the fastest path).
    - `position_ids` [B, T]; by default counted from the mask, so left-padded prompts start at position 0.
    - `kv_cache`: a `KVCache` to read past keys/values from and append this step's to.
    - `logits_to_keep`: None for all positions; an int n for the last n positions; or a bool mask [B, T] for the
      selected positions only, returned flattened as [N, vocab]. The 151,936-wide head dominates activation memory
      in training, so computing logits only where there are labels matters.
    """

    def __init__(self, config: Qwen3Config) -> None:
        super().__init__()
        self.config = config
        self.model = Qwen3Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.tie_weights()
        self.gradient_checkpointing = False
        self.apply(self._init_weights)

    # -------------------------------------------------------------- set-up

    def tie_weights(self) -> None:
        """Make lm_head use the embedding matrix itself (one Parameter, two uses)."""
        self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        # Random initialisation as in transformers: normal with std `initializer_range` (Qwen3: 0.02, sized for
        # its width of 1024); RMSNorm weights start at 1.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The token embeddings' dtype, and so the residual stream's and the KV cache's (bf16 when the frozen weights
        are stored in bf16: `VisionLanguageModel.store_frozen_in`)."""
        return self.model.embed_tokens.weight.dtype

    def new_kv_cache(self, batch_size: int, max_length: int) -> KVCache:
        return KVCache(self.config, batch_size, max_length, dtype=self.dtype, device=self.device)

    # -------------------------------------------------------------- forward

    def hidden_states(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """The final-norm hidden states [B, T, hidden_size]; `forward` puts the LM head on top."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # [B, T, d]
        B, T, _ = x.shape
        past = kv_cache.length if kv_cache is not None else 0

        if position_ids is None:
            if attention_mask is None:
                position_ids = torch.arange(past, past + T, device=x.device).expand(B, T)
            else:  # count only real tokens, so left padding does not shift positions
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past : past + T]
        # RoPE frequencies are recomputed here (64 numbers) rather than kept in a buffer, so they stay fp32 whatever
        # dtype the model is cast to, and need no special care when the model is built on the meta device.
        inv_freq = rope_inverse_frequencies(self.config.head_dim, self.config.rope_theta, x.device)
        cos, sin = rope_cos_sin(position_ids, inv_freq, x.dtype)  # [B, T, head_dim] each

        # No mask at all is the fastest attention path: plainly causal without a cache, and a single new token may
        # see every cached position. Padding, or several new tokens after a cache, need the explicit mask.
        mask = None
        if attention_mask is not None or (past > 0 and T > 1):
            mask = self._attention_mask(attention_mask, B, T, past, x.device)

        for layer in self.model.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                # Recompute this block's activations in the backward pass instead of storing them.
                x = checkpoint(layer, x, cos, sin, mask, kv_cache, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, kv_cache)
        if kv_cache is not None:
            kv_cache.length += T
        return self.model.norm(x)

    @staticmethod
    def _attention_mask(
        attention_mask: torch.Tensor | None, B: int, T: int, past: int, device: torch.device
    ) -> torch.Tensor:
        """Boolean mask [B, 1, T, past + T]: True where query i may attend to key j (causal and not padding)."""
        query_pos = torch.arange(past, past + T, device=device)[:, None]  # [T, 1] absolute positions
        key_pos = torch.arange(past + T, device=device)[None, :]  # [1, past + T]
        mask = (key_pos <= query_pos)[None, None]  # [1, 1, T, past + T]
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, : past + T].bool()  # [B, 1, T, past + T]
        # A padding query (left padding) may see no key at all; let it see everything so softmax stays finite.
        # Its output is never used.
        return mask | ~mask.any(dim=-1, keepdim=True)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        logits_to_keep: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.hidden_states(
            input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            kv_cache=kv_cache,
        )
        if isinstance(logits_to_keep, torch.Tensor):
            h = h[logits_to_keep]  # [N, d]: only the selected positions
        elif logits_to_keep is not None:
            h = h[:, -logits_to_keep:]  # [B, n, d]
        return self.lm_head(h)

    def generate(self, *args, **kwargs) -> torch.Tensor:
        """Greedy or sampled decoding with the KV cache; see `tiny_decoder.generate.generate`."""
        from .generate import generate

        return generate(self, *args, **kwargs)


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[list[list[torch.Tensor]]]:
    """Record the attention weights of every attention layer in `model` while the block runs.

        with recording_attention(decoder) as weights:
            decoder(input_ids)
        weights[layer][call]  # [B, H, T, S]: query position t's weights over the S keys, per head (fp32)

    Each forward pass appends one tensor per layer (with a KV cache, S counts the cached keys too). Inside the block
    each layer computes its output *from these weights* (weights @ v) instead of calling
    `F.scaled_dot_product_attention`: the same numbers up to rounding (the tests check it), and the weights are part
    of the autograd graph, so a gradient with respect to them can be taken (gradient-weighted attention; EXPERIMENTS.md
    section 6). Outside the block the fused kernel runs as always and nothing is recorded or spent. Attention dropout is not applied while
    recording; do not use it with gradient checkpointing (which would run each block's forward twice).
    """
    layers = [m for m in model.modules() if isinstance(m, Qwen3Attention)]
    records: list[list[torch.Tensor]] = [[] for _ in layers]
    for layer, record in zip(layers, records, strict=True):
        layer.recorded = record
    try:
        yield records
    finally:
        for layer in layers:
            del layer.recorded  # back to the class default, None


# ---------------------------------------------------------------------------------------------------------------------
# The loss over a 151,936-token vocabulary, in chunks
# ---------------------------------------------------------------------------------------------------------------------
# The plain loss, F.cross_entropy(hidden @ W.T, targets), keeps the [M, vocab] logits, their log-softmax and, in the
# backward pass, their gradient: 0.6 MB each per target token in fp32 at Qwen3's vocabulary, as much as seven
# decoder blocks keep for that token (~83 KB each). Here the rows go through the head `chunk_size` at a time, and
# each chunk's gradient is computed right away, while its logits exist:
#     d loss / d logits = (softmax(logits) - onehot(target)) / M          (per row, for the mean over M rows)
#     d loss / d hidden = (d loss / d logits) @ W,   d loss / d W = (d loss / d logits).T @ hidden
# Only the [M, d] gradient of the hidden states is kept for the backward pass; no [M, vocab] tensor outlives its
# chunk. No matmul is repeated (unlike checkpointing each chunk, which recomputes the logits in the backward pass).
# The same idea is Liger-Kernel's "fused linear cross-entropy" (Hsu et al. 2024, https://arxiv.org/abs/2410.10989)
# and Apple's "Cut Your Losses" (Wijmans et al. 2024, https://arxiv.org/abs/2411.09009).


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softmax(hidden @ weight.T); the gradients are computed in the forward pass."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        M = hidden.shape[0]
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 softmax, even for bf16 logits
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None  # [M, d]
        grad_weight = torch.zeros_like(weight, dtype=acc) if need_weight else None  # [vocab, d]
        total = torch.zeros((), dtype=acc, device=hidden.device)
        for start in range(0, M, chunk_size):
            h, t = hidden[start : start + chunk_size], targets[start : start + chunk_size]  # [m, d], [m]
            logits = (h @ weight.T).to(acc)  # [m, vocab]: the only large tensor, freed at the end of the chunk
            lse = logits.logsumexp(dim=-1)  # [m]
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            # The gradient of the mean loss with respect to these logits, built in place in the logits' memory.
            grad_logits = logits.sub_(lse[:, None]).exp_()  # [m, vocab]: softmax
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
            grad_logits = grad_logits.div_(M).to(h.dtype)
            if need_hidden:
                grad_hidden[start : start + chunk_size] = grad_logits @ weight  # [m, d]
            if need_weight:
                grad_weight += (grad_logits.T @ h).to(acc)  # [vocab, d]
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total / M

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        # The loss is a scalar, so the chain rule only scales the gradients computed in the forward pass.
        return (
            grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None,
            (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256
) -> torch.Tensor:
    """Mean cross-entropy of the logits hidden @ weight.T [M, vocab] against targets [M], `chunk_size` rows at a time.

    Equal in value and gradient to F.cross_entropy(F.linear(hidden, weight).float(), targets), without ever holding
    the [M, vocab] logits (see the comment above). hidden: [M, d]; weight: [vocab, d] (the LM head); targets: [M].
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_size)
    return -target_log_probs(hidden, weight, targets, chunk_size).mean()


def target_log_probs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256
) -> torch.Tensor:
    """log softmax(hidden @ weight.T)[target] for each row [M], `chunk_size` rows at a time (no gradient kept)."""
    acc = torch.promote_types(hidden.dtype, torch.float32)
    out = torch.empty(len(targets), dtype=acc, device=hidden.device)  # [M]
    with torch.no_grad():
        for start in range(0, len(targets), chunk_size):
            logits = (hidden[start : start + chunk_size] @ weight.T).to(acc)  # [m, vocab]
            # -cross_entropy = log softmax(logits)[target]: one fused pass over the 151,936 columns, where
            # logits.gather(...) - logits.logsumexp(-1) takes four (max, subtract, exp, sum); 1.4-1.8x faster on a CPU.
            out[start : start + chunk_size] = -F.cross_entropy(
                logits, targets[start : start + chunk_size], reduction="none"
            )
    return out
