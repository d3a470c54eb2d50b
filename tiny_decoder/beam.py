"""Beam search with a KV cache: keep the `num_beams` most probable partial sequences instead of one.

Greedy decoding commits to the single best token at every step. Beam search keeps `num_beams` candidates
("beams") per prompt and, at every step, extends each by every token of the vocabulary, scores the
num_beams x vocab_size continuations by their total log-probability, and keeps the best num_beams. A sequence that
looked second-best after two tokens can win after five.

    step t:   beams [B*K rows] -- logits --> candidates [B, K*V] -- top 2K --> K running beams + finished ones

Details that matter, all as in Hugging Face transformers (`generation/utils.py: _beam_search`):
- At the start all K beams of a prompt are the same sequence. Only beam 0 starts with score 0, the others with
  -1e9, so the first step picks K *different* tokens instead of K copies of the best one.
- The top 2K candidates are taken, not K: some may end with end-of-text, and K beams must still go on running.
  A candidate that ends is a finished *hypothesis* (kept only if it ranks among the top K of its step).
- Scores are length-normalised: score = sum of token log-probs / length ** length_penalty, where length counts the
  generated tokens including the end-of-text. length_penalty = 1 is the mean log-prob per token; 0 is the plain
  sum (which favours short outputs, since every token adds a negative log-prob); > 1 favours longer outputs.
- Stopping: with `early_stopping=True` a prompt is done once it has K finished hypotheses. With False it goes on
  while a running beam could still beat the worst of them: its score can only fall as tokens are added, so the
  best it can reach is its current sum divided by the longest (length_penalty > 0) or current (otherwise) length.
  (That is the exact bound, transformers' `early_stopping="never"`.) At `max_new_tokens` the running beams
  become hypotheses too.

The KV cache makes each step cost one token per beam, not the whole sequence. When the surviving beams are chosen,
each new beam continues some old beam: `KVCache.reorder(parent_rows)` copies that parent's cached keys and values
into the new beam's row, so nothing is recomputed. The prompt is run once per prompt (not once per beam) and the
cache rows are then copied K times, with the same `reorder`.

References:
- Graves 2012, "Sequence Transduction with Recurrent Neural Networks", https://arxiv.org/abs/1211.3711 (sec. 3.2)
- Wu et al. 2016, "Google's Neural Machine Translation System" (length normalisation), https://arxiv.org/abs/1609.08144
- https://huggingface.co/blog/how-to-generate (beam search section)

Read next: `captioning/captioner.py` (`caption.py --beams N`), `evaluation/evaluate.py` (captions scored with
`beams` > 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import Qwen3ForCausalLM

NOT_A_BEAM = -1.0e9  # the starting score of beams 1..K-1: never chosen while a real candidate exists


@dataclass
class _Hypotheses:
    """The best `size` finished sequences of one prompt, as (score, tokens), best first."""

    size: int
    items: list[tuple[float, list[int]]] = field(default_factory=list)

    def add(self, score: float, tokens: list[int]) -> None:
        self.items.append((score, tokens))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.size :]

    @property
    def full(self) -> bool:
        return len(self.items) >= self.size

    @property
    def worst(self) -> float:
        return self.items[-1][0]


def _normalise(sum_logprob: float, length: int, length_penalty: float) -> float:
    return sum_logprob / length**length_penalty


@torch.no_grad()
def beam_search(
    model: Qwen3ForCausalLM,
    input_ids: torch.Tensor | None = None,
    *,
    inputs_embeds: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    eos_token_id: int | list[int],
    early_stopping: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best beam of each left-padded prompt: (sequences [B, <= max_new_tokens], scores [B]).

    `sequences` holds only the new tokens, like `generate`: each row ends at its first end-of-text token and is
    filled with the (first) end-of-text id after it. `scores` are the length-normalised scores above.
    """
    if num_beams < 1 or max_new_tokens < 1:
        raise ValueError(f"num_beams and max_new_tokens must be >= 1, got {num_beams} and {max_new_tokens}")
    prompt = input_ids if input_ids is not None else inputs_embeds
    if prompt is None:
        raise ValueError("pass input_ids or inputs_embeds")
    B, T = prompt.shape[:2]
    K, device = num_beams, prompt.device
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    eos = torch.tensor(eos_ids, device=device)
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=device)

    # Prefill once per prompt, then give each of the K beams its own copy of the prompt's cache rows.
    cache = model.new_kv_cache(B, T + max_new_tokens)
    logits = model(
        input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask, kv_cache=cache, logits_to_keep=1
    )[:, -1]  # [B, vocab]
    expand = torch.arange(B, device=device).repeat_interleave(K)  # [B*K]: row b*K + j is beam j of prompt b
    cache.reorder(expand)
    mask = attention_mask[expand]  # [B*K, T]
    logits = logits[expand]  # [B*K, vocab]
    V = logits.shape[-1]

    beam_scores = torch.zeros(B, K, device=device)
    beam_scores[:, 1:] = NOT_A_BEAM
    beam_scores = beam_scores.view(B * K)  # [B*K]: running sum of log-probs of each beam
    tokens = torch.zeros(B * K, 0, dtype=torch.long, device=device)  # [B*K, t]: each beam's tokens so far
    finished = [_Hypotheses(K) for _ in range(B)]
    done = [False] * B

    for step in range(max_new_tokens):
        length = step + 1  # generated tokens once this step's token is added
        candidates = beam_scores[:, None] + logits.float().log_softmax(-1)  # [B*K, V]
        # [B, n] each, n = 2K for one end-of-text id: enough for K beams to go on even if K candidates end.
        top_scores, top_index = candidates.view(B, K * V).topk(min((len(eos_ids) + 1) * K, K * V), dim=1)
        top_beam, top_token = top_index // V, top_index % V  # which beam it extends, with which token
        top_ends = torch.isin(top_token, eos)
        rows_scores, rows_beams, rows_tokens = top_scores.tolist(), top_beam.tolist(), top_token.tolist()
        ends = top_ends.tolist()

        # Defaults, for prompts that are done (their rows are no longer read) and in case fewer than K
        # candidates go on (a vocabulary smaller than the beam): stay in place, with a score that never wins.
        parent = torch.arange(B * K)  # [B*K]: the old row each new beam continues
        next_token = torch.full((B * K,), eos_ids[0])  # [B*K]
        next_score = torch.full((B * K,), NOT_A_BEAM)  # [B*K]
        for b in range(B):
            if done[b]:
                continue
            kept = 0
            for rank in range(len(rows_scores[b])):
                row = b * K + rows_beams[b][rank]
                if ends[b][rank]:
                    if rank < K:  # only a top-K candidate may finish; the others only keep K beams running
                        hypothesis = tokens[row].tolist() + [rows_tokens[b][rank]]
                        finished[b].add(_normalise(rows_scores[b][rank], length, length_penalty), hypothesis)
                    continue
                parent[b * K + kept], next_token[b * K + kept] = row, rows_tokens[b][rank]
                next_score[b * K + kept] = rows_scores[b][rank]
                kept += 1
                if kept == K:
                    break
            best_running = float(next_score[b * K : (b + 1) * K].max())
            done[b] = _is_done(finished[b], best_running, length, max_new_tokens, length_penalty, early_stopping)

        parent, next_token, beam_scores = parent.to(device), next_token.to(device), next_score.to(device)
        tokens = torch.cat([tokens[parent], next_token[:, None]], dim=1)  # [B*K, t + 1]
        if all(done) or length == max_new_tokens:
            break
        # Every new beam continues its parent: move the parent's cached keys/values into its row, then feed
        # only the new token.
        cache.reorder(parent)
        mask = torch.cat([mask[parent], torch.ones_like(mask[:, :1])], dim=1)  # [B*K, T + t + 1]
        logits = model(next_token[:, None], attention_mask=mask, kv_cache=cache)[:, -1]  # [B*K, V]

    # Prompts still running at max_new_tokens: their running beams are hypotheses of full length.
    for b in range(B):
        if not done[b]:
            for j in range(K):
                score = _normalise(float(beam_scores[b * K + j]), tokens.shape[1], length_penalty)
                finished[b].add(score, tokens[b * K + j].tolist())

    best = [finished[b].items[0] for b in range(B)]
    width = max(len(seq) for _, seq in best)
    sequences = torch.full((B, width), eos_ids[0], dtype=torch.long, device=device)  # [B, width]
    for b, (_, seq) in enumerate(best):
        sequences[b, : len(seq)] = torch.tensor(seq, device=device)
    return sequences, torch.tensor([score for score, _ in best], device=device)


def _is_done(
    finished: _Hypotheses,
    best_running_sum: float,
    length: int,
    max_new_tokens: int,
    length_penalty: float,
    early_stopping: bool,
) -> bool:
    """Can this prompt stop? Only with K finished hypotheses, and (unless early_stopping) no running beam that
    could still beat the worst of them."""
    if not finished.full:
        return False
    if early_stopping:
        return True
    best_length = max_new_tokens if length_penalty > 0 else length
    return _normalise(best_running_sum, best_length, length_penalty) <= finished.worst
