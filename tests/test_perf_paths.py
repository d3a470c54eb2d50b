"""The code paths added for speed and memory compute exactly what the plain ones do (bench/ measures the gains).

- The chunked LM-head cross-entropy (`linear_cross_entropy`) equals F.cross_entropy on the full logits, in value
  and in gradient, for any chunk size, and keeps no [rows, vocab] tensor for the backward pass.
- `target_log_probs` (retrieval scoring) equals log_softmax + gather.
- The vision-language loss with small chunks gives the same gradients as the plain loss.
- Attention without a mask when nothing is padded (single-token decoding, unpadded prompts) stays causal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_qwen3_config

from bridge import VisionLanguageModel, VLMConfig
from tiny_decoder import Qwen3ForCausalLM
from tiny_decoder.model import linear_cross_entropy, target_log_probs
from vision import build_encoder


def head_problem(rows: int = 13, dim: int = 8, vocab: int = 50, dtype=torch.float64):
    torch.manual_seed(0)
    hidden = torch.randn(rows, dim, dtype=dtype, requires_grad=True)
    weight = torch.randn(vocab, dim, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_size", [1, 4, 13, 100])
def test_chunked_cross_entropy_equals_the_plain_one_in_value_and_gradient(chunk_size):
    hidden, weight, targets = head_problem()
    plain = F.cross_entropy(F.linear(hidden, weight), targets)
    grad_hidden, grad_weight = torch.autograd.grad(3.0 * plain, (hidden, weight))  # a scale tests the chain rule

    chunked = linear_cross_entropy(hidden, weight, targets, chunk_size)
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-12)
    mine_hidden, mine_weight = torch.autograd.grad(3.0 * chunked, (hidden, weight))
    torch.testing.assert_close(mine_hidden, grad_hidden)
    torch.testing.assert_close(mine_weight, grad_weight)


def test_chunked_cross_entropy_with_a_frozen_head_and_without_gradients():
    hidden, weight, targets = head_problem()
    weight = weight.detach()  # the tied embedding/head is frozen in this project
    plain = F.cross_entropy(F.linear(hidden, weight), targets)
    (expected,) = torch.autograd.grad(plain, hidden)
    (got,) = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets, 5), hidden)
    torch.testing.assert_close(got, expected)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets, 5)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-12)
    assert loss.grad_fn is None


def test_chunked_cross_entropy_keeps_no_vocabulary_sized_tensor_for_backward():
    hidden, weight, targets = head_problem(rows=6, dim=4, vocab=1000)
    weight = weight.detach()
    saved = []

    def record(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
        F.cross_entropy(F.linear(hidden, weight), targets)
    assert max(saved) >= 6 * 1000  # the plain loss keeps [rows, vocab] (log-)probabilities
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
        linear_cross_entropy(hidden, weight, targets, 2)
    assert max(saved) <= 6 * 4  # the chunked one keeps only the [rows, d] gradient of the hidden states


def test_chunked_cross_entropy_under_bf16_autocast_matches_the_plain_loss():
    hidden, weight, targets = head_problem(dtype=torch.float32)
    weight = weight.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.cross_entropy(F.linear(hidden, weight).float(), targets)
        chunked = linear_cross_entropy(hidden, weight, targets, 4)
    assert chunked.dtype == torch.float32
    assert chunked.item() == pytest.approx(plain.item(), rel=1e-3)
    (expected,) = torch.autograd.grad(plain, hidden)
    (got,) = torch.autograd.grad(chunked, hidden)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-3)


def test_target_log_probs_equals_log_softmax_and_gather():
    hidden, weight, targets = head_problem()
    expected = F.log_softmax(hidden @ weight.T, -1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(target_log_probs(hidden, weight, targets, 3), expected.detach())


def test_vlm_loss_in_small_chunks_gives_the_plain_loss_and_gradients():
    torch.manual_seed(0)
    config = tiny_qwen3_config()
    vlm_config = VLMConfig(encoder="tiny", encoder_weights="none", num_visual_tokens=3, top_k=1)
    model = VisionLanguageModel(vlm_config, build_encoder("tiny", "none"), Qwen3ForCausalLM(config))
    input_ids = torch.randint(2, 64, (3, 6))
    labels = input_ids.clone()
    labels[:, :2] = -100  # prompt
    labels[2, 4:] = -100  # padding
    features = torch.randn(3, model.encoder.pooled_dim)
    params = [p for group in model.parameter_groups().values() for p in group]

    # The plain loss, written out: logits at the labelled positions, then F.cross_entropy.
    keep, next_tokens = model._targets(labels)
    hidden = model.decoder.hidden_states(inputs_embeds=model.sequence_embeddings(input_ids, None, features))[:, :-1]
    plain = F.cross_entropy(model.decoder.lm_head(hidden[keep]).float(), next_tokens[keep])
    expected = torch.autograd.grad(plain, params)

    model.loss_chunk_size = 2  # several chunks for the 11 labelled positions
    loss = model(input_ids, labels, features=features)
    assert loss.item() == pytest.approx(plain.item(), rel=1e-6)
    for got, want in zip(torch.autograd.grad(loss, params), expected, strict=True):
        torch.testing.assert_close(got, want)
    # Retrieval scores use the same chunked head.
    ll = model.sequence_log_likelihood(input_ids[:1], labels[:1], features=features[:1])
    assert -ll.item() == pytest.approx(model(input_ids[:1], labels[:1], features=features[:1]).item(), rel=1e-5)


def test_unmasked_steps_after_a_cache_stay_causal():
    """One token after a cache needs no mask; several tokens after a cache still get the causal one."""
    torch.manual_seed(0)
    config = tiny_qwen3_config(vocab_size=50)
    model = Qwen3ForCausalLM(config).eval()
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        full = model(ids)  # [2, 9, vocab]
        cache = model.new_kv_cache(2, 9)
        parts = [
            model(ids[:, :5], kv_cache=cache),
            model(ids[:, 5:8], kv_cache=cache),
            model(ids[:, 8:], kv_cache=cache),
        ]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kv_heads", [1, 2, 4])  # grouped-query ratios 4, 2 and 1
def test_continuations_of_shared_prefixes_equal_running_each_row_in_full(kv_heads):
    """`continuation_hidden_states`: B continuations of each of I prefixes, attending to the prefix where it is
    cached, give the hidden states of running [prefix i][continuation b] as one sequence."""
    from tiny_decoder.shared_prefix import continuation_hidden_states

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(tiny_qwen3_config(num_key_value_heads=kv_heads)).eval()
    I, B, P, S, d = 3, 4, 5, 6, model.config.hidden_size  # noqa: E741
    prefixes, texts = torch.randn(I, P, d), torch.randn(B, S, d)
    with torch.no_grad():
        cache = model.new_kv_cache(I, P)
        model.hidden_states(inputs_embeds=prefixes, kv_cache=cache)
        got = continuation_hidden_states(model, cache, texts.expand(I, B, S, d))  # [I, B, S, d]
        for i in range(I):
            full = model.hidden_states(inputs_embeds=torch.cat([prefixes[i].expand(B, P, d), texts], dim=1))
            torch.testing.assert_close(got[i], full[:, P:], rtol=1e-5, atol=1e-5)
    assert cache.k[0].shape[0] == I  # the cache still holds one row per prefix


def scored_one_by_one(model, input_ids: torch.Tensor, labels: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The plain reference for retrieval's scores: each (image i, text b) pair run alone and in full through
    `sequence_log_likelihood`, [I, B]."""
    return torch.tensor(
        [
            [
                model.sequence_log_likelihood(input_ids[b : b + 1], labels[b : b + 1], features=f[None]).item()
                for b in range(len(input_ids))
            ]
            for f in features
        ]
    )


def test_shared_prefix_scores_equal_scoring_each_pair_alone_and_copy_nothing(monkeypatch):
    """Retrieval's scores: the shared prefix gives the scores of running each (image, caption) pair alone, and never
    copies cache rows."""
    from tiny_decoder.model import KVCache

    torch.manual_seed(0)
    vlm_config = VLMConfig(encoder="tiny", encoder_weights="none", num_visual_tokens=3, top_k=1)
    model = VisionLanguageModel(vlm_config, build_encoder("tiny", "none"), Qwen3ForCausalLM(tiny_qwen3_config()))
    model.eval()
    input_ids = torch.randint(2, 64, (4, 8))
    input_ids[:, :2] = torch.tensor([5, 7])  # the same 2-token prompt in every row
    labels = input_ids.clone()
    labels[:, :2] = -100
    labels[1, 5:], labels[3, 3:] = -100, -100  # right padding of different lengths
    features = torch.randn(3, model.encoder.pooled_dim)
    with torch.no_grad():
        alone = scored_one_by_one(model, input_ids, labels, features)  # [3, 4]
        monkeypatch.setattr(KVCache, "reorder", lambda *a: pytest.fail("the shared prefix copied cache rows"))
        shared = model.shared_prefix_log_likelihood(input_ids, labels, 2, features=features)
    assert shared.shape == (3, 4) and not torch.allclose(shared[0], shared[1])  # the image changes the scores
    torch.testing.assert_close(shared, alone, rtol=1e-5, atol=1e-5)


def test_retrieval_flop_count_matches_torch_flop_counter():
    """bench/retrieval.py's FLOP count of scoring captions against images is what the code executes."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.retrieval import retrieval_flops

    torch.manual_seed(0)
    config = tiny_qwen3_config(hidden_size=64, intermediate_size=128, vocab_size=256, head_dim=16)
    vlm_config = VLMConfig(encoder="tiny", encoder_weights="none", num_visual_tokens=3, top_k=1)
    model = VisionLanguageModel(vlm_config, build_encoder("tiny", "none"), Qwen3ForCausalLM(config)).eval()
    lengths = [7, 5, 9, 6]  # caption tokens with the end-of-text, after a 2-token prompt; right-padded to 9
    input_ids = torch.randint(2, 256, (4, 2 + 9))
    input_ids[:, :2] = torch.tensor([5, 7])
    labels = torch.full_like(input_ids, -100)
    for row, n in enumerate(lengths):
        labels[row, 2 : 2 + n] = input_ids[row, 2 : 2 + n]
    features = torch.randn(3, model.encoder.pooled_dim)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.shared_prefix_log_likelihood(input_ids, labels, 2, features=features)
    with torch.no_grad(), FlopCounterMode(display=False) as bridge:
        model.visual_tokens(features=features)
    counted = counter.get_total_flops() - bridge.get_total_flops()
    expected = retrieval_flops(config, lengths, 3, 2, batch_size=4, num_visual_tokens=3).total
    assert counted == pytest.approx(expected, rel=0.01)  # the prefixes' own attention is left out of the count


def test_shared_prefix_scores_under_bf16_autocast_match_scoring_each_pair_alone():
    """On CUDA the evaluation runs under bf16 autocast: with fp32 weights and cache here, the shared prefix agrees with
    each pair run alone, under the same autocast and in fp32 (tests/test_bf16_storage.py: with the frozen weights and
    the cache in bf16, as train.py stores them there)."""
    torch.manual_seed(0)
    vlm_config = VLMConfig(encoder="tiny", encoder_weights="none", num_visual_tokens=3, top_k=1)
    model = VisionLanguageModel(vlm_config, build_encoder("tiny", "none"), Qwen3ForCausalLM(tiny_qwen3_config()))
    model.eval()
    input_ids = torch.randint(2, 64, (3, 7))
    input_ids[:, :2] = torch.tensor([5, 7])
    labels = input_ids.clone()
    labels[:, :2] = -100
    features = torch.randn(2, model.encoder.pooled_dim)
    with torch.no_grad():
        exact = scored_one_by_one(model, input_ids, labels, features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            alone = scored_one_by_one(model, input_ids, labels, features)
            shared = model.shared_prefix_log_likelihood(input_ids, labels, 2, features=features)
    assert shared.dtype == torch.float32 and shared.shape == (2, 3)
    torch.testing.assert_close(shared, alone, rtol=0, atol=0.05)
    torch.testing.assert_close(shared, exact, rtol=0, atol=0.05)
