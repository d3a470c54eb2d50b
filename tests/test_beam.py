"""Beam search (tiny_decoder/beam.py): equal to greedy with one beam, at least as good with several, the same with
the KV cache reordered as with every step recomputed, and the same sequences and scores as transformers'."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen3_config

from tiny_decoder import Qwen3ForCausalLM, generate
from tiny_decoder.beam import beam_search
from weights_loader import load_qwen3

VOCAB = 48


# Tiny models run fastest on one thread; two threads fighting other processes for 2 cores are 10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def random_decoder(seed: int = 0) -> Qwen3ForCausalLM:
    """A tiny random Qwen3 with an untied head. Weights at std 0.5 (not 0.02) give peaked, varied next-token
    distributions: candidates' ranks are clear-cut, never decided by float rounding, and the best sequence is not
    always the greedy one. (A tied head at that scale only repeats the last token.)"""
    torch.manual_seed(seed)
    config = tiny_qwen3_config(vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=False)
    model = Qwen3ForCausalLM(config).eval()
    torch.nn.init.normal_(model.model.embed_tokens.weight, std=0.5)
    torch.nn.init.normal_(model.lm_head.weight, std=0.5)
    return model


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of different lengths -> (input_ids [B, T], attention_mask [B, T]), padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)  # [B, T]
    mask = torch.zeros(len(prompts), width, dtype=torch.long)  # [B, T]
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :], mask[b, width - len(p) :] = torch.tensor(p), 1
    return ids, mask


PROMPTS = [[5, 9, 2, 30, 11], [7, 41], [3, 3, 17, 25], [12, 8, 40], [44], [19, 6, 27, 1, 33, 10]]


def frequent_eos(model: Qwen3ForCausalLM, prompts: list[list[int]]) -> int:
    """An end-of-text id that greedy decoding reaches early: a random model has no end-of-text of its own, and a
    test whose hypotheses never finish would not exercise the finishing logic."""
    ids, mask = left_padded(prompts)
    out = generate(model, ids, attention_mask=mask, max_new_tokens=4, eos_token_id=[])
    return int(out[0, 2])


@torch.no_grad()
def log_prob_sum(model: Qwen3ForCausalLM, prompt: list[int], tokens: list[int]) -> float:
    """sum_t log p(tokens[t] | prompt, tokens[:t]), recomputed without a cache."""
    logits = model(torch.tensor([prompt + tokens]))[0].float()  # [T, V]
    logp = logits.log_softmax(-1)[len(prompt) - 1 : -1]  # [len(tokens), V]: the positions that predict them
    return float(logp.gather(-1, torch.tensor(tokens)[:, None]).sum())


def until_eos(row: list[int], eos: int) -> list[int]:
    """Generated tokens up to and including the first end-of-text."""
    return row[: row.index(eos) + 1] if eos in row else row


@torch.no_grad()
def naive_beam_search(model, prompt_embeds, num_beams, max_new_tokens, length_penalty, eos, early_stopping):
    """Beam search written plainly, one prompt at a time, recomputing every sequence from scratch at every step.

    The reference for the KV-cache version: the same rules (top 2K candidates, a candidate ending with eos finishes
    only if it ranks in the top K, K finished hypotheses kept) and no cache, no padding, no batching.
    Returns the best (score, tokens) of each prompt, and how many hypotheses ended with eos.
    """
    results, ended = [], 0
    embed = model.model.embed_tokens
    for embeds in prompt_embeds:  # [T, d]
        beams: list[tuple[list[int], float]] = [([], 0.0)]  # (tokens, sum of log-probs); one beam at the start
        finished: list[tuple[float, list[int]]] = []
        for step in range(max_new_tokens):
            candidates = []
            for j, (tokens, total) in enumerate(beams):
                x = torch.cat([embeds, embed(torch.tensor(tokens, dtype=torch.long))])[None]  # [1, T + t, d]
                logp = model(inputs_embeds=x)[0, -1].float().log_softmax(-1)  # [V]
                candidates += [(total + float(logp[v]), j, v) for v in range(VOCAB)]
            candidates.sort(key=lambda c: -c[0])
            running = []
            for rank, (total, j, v) in enumerate(candidates[: 2 * num_beams]):
                if v == eos:
                    if rank < num_beams:
                        ended += 1
                        finished.append((total / (step + 1) ** length_penalty, beams[j][0] + [v]))
                    continue
                running.append((beams[j][0] + [v], total))
                if len(running) == num_beams:
                    break
            beams = running
            finished = sorted(finished, key=lambda f: -f[0])[:num_beams]
            if len(finished) == num_beams:
                best_length = max_new_tokens if length_penalty > 0 else step + 1
                if early_stopping or beams[0][1] / best_length**length_penalty <= finished[-1][0]:
                    break
        else:  # max_new_tokens reached: the running beams are hypotheses too
            finished += [(total / max_new_tokens**length_penalty, tokens) for tokens, total in beams]
        results.append(max(finished, key=lambda f: f[0]))
    return results, ended


# --------------------------------------------------------------------------------------------------------------------


def test_one_beam_is_greedy():
    model = random_decoder()
    eos = frequent_eos(model, PROMPTS)
    ids, mask = left_padded(PROMPTS)
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos)
    sequences, scores = beam_search(model, ids, attention_mask=mask, num_beams=1, max_new_tokens=10, eos_token_id=eos)
    assert any(eos in row for row in greedy.tolist()), "the test needs rows that end"
    assert torch.equal(sequences, greedy[:, : sequences.shape[1]])
    assert (greedy[:, sequences.shape[1] :] == eos).all()  # greedy's extra columns are only padding
    for b, prompt in enumerate(PROMPTS):  # length_penalty 1: the score is the mean log-prob per generated token
        tokens = until_eos(greedy[b].tolist(), eos)
        assert scores[b].item() == pytest.approx(log_prob_sum(model, prompt, tokens) / len(tokens), abs=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_more_beams_score_at_least_greedy(length_penalty):
    # Not a theorem (the greedy prefix can fall out of the beam and the beams then all do worse), but what beam
    # search is for: on these prompts the best beam is at least as probable as greedy's output, often more.
    model = random_decoder(seed=1)
    eos = frequent_eos(model, PROMPTS)
    ids, mask = left_padded(PROMPTS)
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=8, eos_token_id=eos)
    _, scores = beam_search(
        model, ids, attention_mask=mask, num_beams=4, max_new_tokens=8, length_penalty=length_penalty,
        eos_token_id=eos, early_stopping=False,
    )  # fmt: skip
    better = 0
    for b, prompt in enumerate(PROMPTS):
        tokens = until_eos(greedy[b].tolist(), eos)
        greedy_score = log_prob_sum(model, prompt, tokens) / len(tokens) ** length_penalty
        assert scores[b].item() >= greedy_score - 1e-5
        better += scores[b].item() > greedy_score + 1e-3
    assert better >= 1, "beam search never found anything better than greedy: is it searching at all?"


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping", "seed"),
    # Seed 3 with 4 beams has a prompt where a candidate ranked 5th-8th ends: it must not count as finished.
    [(2, 1.0, True, 2), (3, 0.0, True, 2), (4, 2.0, False, 2), (4, 1.0, True, 3)],
)
def test_kv_cache_reordering_equals_recomputation(num_beams, length_penalty, early_stopping, seed):
    model = random_decoder(seed)
    prompts = PROMPTS[:4]
    eos = frequent_eos(model, prompts)
    ids, mask = left_padded(prompts)
    options = dict(num_beams=num_beams, max_new_tokens=7, length_penalty=length_penalty, early_stopping=early_stopping)
    embeds = model.model.embed_tokens(ids).detach()  # [B, T, d]: the path the vision model uses
    from_ids = beam_search(model, ids, attention_mask=mask, eos_token_id=eos, **options)
    from_embeds = beam_search(model, inputs_embeds=embeds, attention_mask=mask, eos_token_id=eos, **options)
    reference, ended = naive_beam_search(model, [model.model.embed_tokens(torch.tensor(p)) for p in prompts], eos=eos,
                                  **options)  # fmt: skip
    for sequences, scores in (from_ids, from_embeds):
        for b, (ref_score, ref_tokens) in enumerate(reference):
            assert until_eos(sequences[b].tolist(), eos) == ref_tokens
            assert scores[b].item() == pytest.approx(ref_score, abs=1e-4)
    assert ended > 0, "the test needs hypotheses that finish"


def test_cache_is_reordered_not_recomputed():
    """After the prompt, every forward pass feeds one token per beam: the past comes from the (reordered) cache."""
    model = random_decoder()
    ids, mask = left_padded(PROMPTS[:3])
    calls = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: calls.append(tuple((args[0] if args else kwargs["inputs_embeds"]).shape[:2])),
        with_kwargs=True,
    )
    try:
        beam_search(model, ids, attention_mask=mask, num_beams=3, max_new_tokens=5, eos_token_id=VOCAB - 1)
    finally:
        hook.remove()
    assert calls[0] == (3, ids.shape[1])  # the prompt once per prompt, not once per beam
    assert calls[1:] == [(9, 1)] * 4  # then one token for each of the 3 x 3 beams per step


def test_matches_transformers_beam_search(tiny_checkpoint):
    """Same sequences and length-normalised scores as transformers' generate(num_beams=...)."""
    path, hf_model = tiny_checkpoint(seed=3, vocab_size=VOCAB)
    ours = load_qwen3(path).eval()
    ids, mask = left_padded(PROMPTS[:4])
    eos = frequent_eos(ours, PROMPTS[:4])
    for length_penalty in (0.0, 1.0, 2.0):
        expected = hf_model.generate(
            ids, attention_mask=mask, num_beams=3, max_new_tokens=8, length_penalty=length_penalty,
            early_stopping=True, eos_token_id=eos, pad_token_id=eos, do_sample=False,
            output_scores=True, return_dict_in_generate=True,
        )  # fmt: skip
        sequences, scores = beam_search(
            ours, ids, attention_mask=mask, num_beams=3, max_new_tokens=8, length_penalty=length_penalty,
            eos_token_id=eos,
        )  # fmt: skip
        new = expected.sequences[:, ids.shape[1] :]
        assert torch.equal(new[:, : sequences.shape[1]], sequences)
        assert (new[:, sequences.shape[1] :] == eos).all()
        torch.testing.assert_close(scores, expected.sequences_scores.float(), atol=1e-4, rtol=0)


def test_invalid_arguments():
    model = random_decoder()
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(model, torch.tensor([[1, 2]]), num_beams=0, max_new_tokens=3, eos_token_id=0)
