"""Autoregressive decoding with a KV cache: greedy and sampling (temperature, top-k, top-p).

Decoding has two phases:
1. *Prefill*: the whole prompt goes through the model once; every layer stores its keys and values in the cache.
2. *Decode*: one new token at a time; each step computes keys/values for that token only and attends to the cache.
   Without the cache every step would recompute the whole sequence: O(T²) work instead of O(T).

Prompts of different lengths are batched with LEFT padding (`attention_mask` 0 on the pads), so every row's next
token lands in the same column. Positions are counted from the mask, so padding does not shift RoPE angles.
A prompt may be given as embeddings (`inputs_embeds`): that is how an image prefix reaches the decoder.

References:
- Holtzman et al. 2019, "The Curious Case of Neural Text Degeneration" (top-p / nucleus sampling),
  https://arxiv.org/abs/1904.09751
- transformers `generation/utils.py` and `generation/logits_process.py`

Read next: `tiny_decoder/beam.py` (several candidates instead of one), `caption.py` (where a user picks one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import Qwen3ForCausalLM


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k tokens and outside the smallest set whose probability reaches top_p."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth_best = logits.topk(top_k, dim=-1).values[..., -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens ranked above it already reach top_p (so the best token always stays).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits [B, vocab]: the argmax, or a sample from the filtered softmax."""
    if not do_sample:
        return logits.argmax(dim=-1)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: Qwen3ForCausalLM,
    input_ids: torch.Tensor | None = None,
    *,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue left-padded prompts; return only the new tokens, [B, <= max_new_tokens].

    Rows that produced an end-of-text token are filled with `pad_token_id` afterwards; decoding stops early once
    every row has ended. `eos_token_id` defaults to the model config's.
    """
    prompt = input_ids if input_ids is not None else inputs_embeds
    if prompt is None:
        raise ValueError("pass input_ids or inputs_embeds")
    B, T = prompt.shape[:2]
    device = prompt.device
    if eos_token_id is None:
        eos_token_id = model.config.eos_token_id
    eos = torch.tensor([] if eos_token_id is None else eos_token_id, device=device).long().reshape(-1)
    if pad_token_id is None:
        pad_token_id = int(eos[0]) if len(eos) else 0
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=device)

    # Without padding the model needs no mask (the prompt is plainly causal, each new token sees the whole cache),
    # and it then takes its fastest attention path. With padding the mask grows by one column per step.
    padded = not bool(attention_mask.all())
    cache = model.new_kv_cache(B, T + max_new_tokens)
    pick = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)

    # Prefill: the whole prompt at once; keep only the last position's logits.
    logits = model(
        input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask if padded else None,
        kv_cache=cache,
        logits_to_keep=1,
    )[:, -1]  # [B, vocab]
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    new_tokens = []
    for _ in range(max_new_tokens):
        sampled = next_token(logits, **pick)  # [B]
        token = sampled.masked_fill(finished, pad_token_id)  # rows that already ended only pad
        new_tokens.append(token)
        finished |= torch.isin(token, eos)
        if finished.all() or len(new_tokens) == max_new_tokens:
            break
        # Decode: feed the one new token; the cache supplies everything before it. Ended rows are fed their
        # (ignored) sampled token, which is always a valid id, unlike a pad id such as -1.
        if padded:
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)  # [B, t+1]
        logits = model(sampled[:, None], attention_mask=attention_mask if padded else None, kv_cache=cache)[:, -1]
    return torch.stack(new_tokens, dim=1)
