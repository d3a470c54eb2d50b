"""The bridge and the vision-language model: what trains, where the loss is, and that the image matters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_qwen3_config

from bridge import HiddenStateProjector, PooledAdapter, VisionLanguageModel, VLMConfig
from errors import UserError
from tiny_decoder import Qwen3ForCausalLM
from vision import build_encoder

LAYERS = 4


def tiny_decoder(vocab: int = 64, seed: int = 0) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    config = tiny_qwen3_config(vocab_size=vocab, num_hidden_layers=LAYERS, eos_token_id=1)
    model = Qwen3ForCausalLM(config)
    # A random embedding of std 0.02 is frozen here and doubles as the LM head: logits would stay near zero whatever
    # the top blocks learn. A pretrained embedding is sharper; std 0.5 stands in for that.
    torch.nn.init.normal_(model.model.embed_tokens.weight, std=0.5)
    return model


def tiny_vlm(top_k: int = 1, view: str = "pooled", num_tokens: int = 4, vocab: int = 64) -> VisionLanguageModel:
    config = VLMConfig(encoder="tiny", encoder_weights="none", view=view, num_visual_tokens=num_tokens, top_k=top_k)
    return VisionLanguageModel(config, build_encoder("tiny", "none"), tiny_decoder(vocab))


def batch(B: int = 3, T: int = 7, vocab: int = 64):
    """Right-padded batch: prompt (2 tokens, no label), target (label), padding (no label)."""
    input_ids = torch.randint(2, vocab, (B, T))
    labels = input_ids.clone()
    labels[:, :2] = -100  # prompt
    labels[1, 5:] = -100  # row 1 is padded from position 5
    input_ids[1, 5:] = 0
    return input_ids, labels, torch.rand(B, 3, 48, 48)


# ----------------------------------------------------------------------------------------------------- adapters


def test_pooled_adapter_shape_and_embedding_scale():
    adapter = PooledAdapter(768, 1024, num_tokens=16, target_rms=0.03)
    out = adapter(torch.randn(2, 768) * 50)  # encoder features of any scale
    assert out.shape == (2, 16, 1024)
    assert out.pow(2).mean().sqrt().item() == pytest.approx(0.03, rel=1e-3)


def test_hidden_state_projector_pools_the_patch_grid_spatially():
    proj = HiddenStateProjector(8, 12, num_tokens=4)
    tokens = torch.zeros(1, 1 + 16, 8)  # CLS + a 4x4 grid
    tokens[0, 1 + 0] = 1.0  # top-left patch
    pooled = proj.pool(tokens)  # [1, 4, 8]: a 2x2 grid
    assert pooled.shape == (1, 4, 8)
    assert pooled[0, 0, 0] == pytest.approx(0.25) and pooled[0, 1:].abs().sum() == 0  # stays in the top-left cell
    assert HiddenStateProjector(8, 12, num_tokens=None)(tokens).shape == (1, 17, 12)
    assert HiddenStateProjector(8, 12, num_tokens=5)(torch.randn(2, 50, 8)).shape == (2, 5, 12)


# ----------------------------------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("top_k", [0, 1, 3])
@pytest.mark.parametrize("view", ["pooled", "hidden"])
def test_exactly_the_bridge_and_top_k_blocks_get_gradients(top_k, view):
    model = tiny_vlm(top_k=top_k, view=view)
    model.train()
    input_ids, labels, pixels = batch()
    model(input_ids, labels, pixel_values=pixels).backward()
    top = {f"decoder.model.layers.{i}." for i in range(LAYERS - top_k, LAYERS)}
    for name, p in model.named_parameters():
        should_train = name.startswith("bridge.") or any(name.startswith(t) for t in top)
        assert p.requires_grad == should_train, name
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == should_train, name
    assert len(model.trainable_state_dict()) == sum(p.requires_grad for p in model.parameters())
    assert "trains" in model.summary() and f"top {top_k}" in model.summary() or top_k == 0


def test_encoder_stays_in_eval_mode_and_top_k_is_validated():
    model = tiny_vlm(top_k=2)
    model.train()
    assert model.training and model.bridge.training and not model.encoder.training
    with pytest.raises(UserError, match=r"top_k=5 is invalid; the decoder has 4 blocks"):
        tiny_vlm(top_k=5)
    with pytest.raises(UserError, match="top_k=-1"):
        VLMConfig(top_k=-1)


def test_summary_table_counts_every_parameter():
    model = tiny_vlm(top_k=1)
    table = model.summary()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert f"{total:,}" in table and f"{trainable:,} trainable" in table
    assert "decoder blocks 3-3 (top 1)" in table


# ----------------------------------------------------------------------------------------------------- loss


def test_loss_equals_a_hand_computation_and_ignores_unlabelled_positions():
    model = tiny_vlm(top_k=1, num_tokens=4).eval()
    input_ids, labels, pixels = batch()
    features = model.encoder(pixels)
    loss = model(input_ids, labels, features=features)

    # By hand: the whole sequence's logits, then position t scores token t + 1 wherever that token has a label.
    with torch.no_grad():
        visual = model.bridge(features)
        logits = model.decoder(inputs_embeds=torch.cat([visual, model.decoder.model.embed_tokens(input_ids)], 1))
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            if labels[b, t] != -100:
                total -= F.log_softmax(logits[b, 4 + t - 1], -1)[labels[b, t]].item()
                count += 1
    assert loss.item() == pytest.approx(total / count, rel=1e-5)

    # Changing a padding token's input, or any label that is -100 (visual, prompt, pad), changes nothing.
    changed = input_ids.clone()
    changed[1, 6] = 7
    assert model(changed, labels, features=features).item() == pytest.approx(loss.item(), rel=1e-6)
    # ...and changing a target label does.
    other = labels.clone()
    other[0, 4] = (labels[0, 4] + 1) % 64
    assert model(input_ids, other, features=features).item() != pytest.approx(loss.item(), rel=1e-6)

    # Per-sample mean log-likelihood agrees with the loss on a batch of one.
    ll = model.sequence_log_likelihood(input_ids[:1], labels[:1], features=features[:1])
    assert -ll.item() == pytest.approx(model(input_ids[:1], labels[:1], features=features[:1]).item(), rel=1e-5)


def test_the_image_changes_the_logits():
    model = tiny_vlm(top_k=1).eval()
    input_ids, labels, _ = batch(B=2)
    dark, bright = torch.zeros(2, 3, 48, 48), torch.ones(2, 3, 48, 48)
    a = model.sequence_log_likelihood(input_ids, labels, pixel_values=dark)
    b = model.sequence_log_likelihood(input_ids, labels, pixel_values=bright)
    assert (a - b).abs().min() > 1e-4


def test_overfits_eight_image_caption_pairs_then_captions_each_image():
    """A tiny model memorises 8 pairs: loss near zero, and greedy generation returns each image's own caption."""
    torch.manual_seed(0)
    vocab, prompt, eos = 40, [2, 3], 1
    model = tiny_vlm(top_k=LAYERS, view="hidden", num_tokens=4, vocab=vocab)
    images = torch.rand(8, 3, 48, 48)
    captions = [torch.randint(4, vocab, (5,)).tolist() for _ in range(8)]
    input_ids = torch.tensor([prompt + c + [eos] for c in captions])
    labels = input_ids.clone()
    labels[:, : len(prompt)] = -100
    features = model.encoder(images, view="hidden")
    groups = model.parameter_groups()
    optimizer = torch.optim.AdamW(
        [{"params": groups["bridge"], "lr": 3e-3}, {"params": groups["decoder"], "lr": 3e-3}], weight_decay=0.0
    )
    model.train()
    for _ in range(300):
        loss = model(input_ids, labels, features=features)
        if loss.item() < 0.02:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.eval()
    generated = model.generate([prompt] * 8, features=features, max_new_tokens=8, eos_token_id=eos)
    assert generated == captions


def test_trainable_state_dict_round_trip_and_mismatch_errors():
    model = tiny_vlm(top_k=1)
    state = {k: v.clone() + 1 for k, v in model.trainable_state_dict().items()}
    model.load_trainable_state_dict(state)
    for k, v in model.trainable_state_dict().items():
        torch.testing.assert_close(v, state[k])
    with pytest.raises(UserError, match="missing"):
        tiny_vlm(top_k=2).load_trainable_state_dict(state)
    with pytest.raises(UserError, match="has shape"):
        tiny_vlm(top_k=1, num_tokens=5).load_trainable_state_dict(state)


def test_more_visual_tokens_than_the_encoder_has_is_refused():
    with pytest.raises(UserError, match=r"num_visual_tokens=11 is invalid .* it has 10 tokens"):
        tiny_vlm(view="hidden", num_tokens=11)
    assert tiny_vlm(view="hidden", num_tokens=10).bridge(torch.zeros(1, 10, 192)).shape == (1, 10, 32)


def test_prompts_of_different_lengths_generate_in_a_batch_what_each_generates_alone():
    """`prompt_embeddings` left-pads [visual tokens][prompt] rows made by `sequence_embeddings`: a batch of a
    caption prompt and two questions of other lengths gives each row the tokens it gives alone, and its unpadded
    row is exactly the training sequence's."""
    torch.manual_seed(0)
    model = tiny_vlm(top_k=1).eval()
    images = torch.rand(3, 3, 48, 48)
    prompts = [[5, 6], [7, 8, 9, 10, 11], [12]]
    with torch.no_grad():
        embeds, mask = model.prompt_embeddings(prompts, images)
        for i, prompt in enumerate(prompts):
            alone = model.sequence_embeddings(torch.tensor([prompt]), images[i : i + 1])[0]  # [N + len, d]
            assert mask[i].sum() == len(alone) and not mask[i, : -len(alone)].any()
            torch.testing.assert_close(embeds[i, -len(alone) :], alone)  # batch vs one: float sums
        batched = model.generate(prompts, images, max_new_tokens=6)
        singles = [model.generate([p], images[i : i + 1], max_new_tokens=6)[0] for i, p in enumerate(prompts)]
    assert batched == singles


def test_the_lead_token_puts_end_of_text_at_position_0_everywhere_the_sequence_is_made():
    """`--lead-token`: [<|endoftext|>][visual][text] in training, retrieval and generation alike; the labels move
    with it, and batched generation still gives each row what it gives alone."""
    torch.manual_seed(0)
    config = VLMConfig(encoder="tiny", encoder_weights="none", num_visual_tokens=4, top_k=1, lead_token=True)
    model = VisionLanguageModel(config, build_encoder("tiny", "none"), tiny_decoder()).eval()
    input_ids, labels, images = batch()
    embeds = model.sequence_embeddings(input_ids, images)
    eos = model.decoder.model.embed_tokens.weight[model.lead_token_id]
    assert embeds.shape[1] == 1 + 4 + input_ids.shape[1] and model.prefix_length == 5
    assert torch.equal(embeds[:, 0], eos.expand(len(input_ids), -1))
    loss = model(input_ids, labels, images)
    # the same loss by hand: logits of the position before each labelled token
    logits = model.decoder(inputs_embeds=embeds)  # [B, 5 + T, V]
    want = F.cross_entropy(logits[:, 4:-1].reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(loss, want)
    prompts = [[5, 6], [7, 8, 9]]
    with torch.no_grad():
        batched = model.generate(prompts, images[:2], max_new_tokens=5)
        singles = [model.generate([p], images[i : i + 1], max_new_tokens=5)[0] for i, p in enumerate(prompts)]
    assert batched == singles
    zero = Qwen3ForCausalLM(tiny_qwen3_config(num_hidden_layers=LAYERS, eos_token_id=0))  # the demo's id: valid
    assert VisionLanguageModel(config, build_encoder("tiny", "none"), zero).lead_token_id == 0
    with pytest.raises(UserError, match="--lead-token needs the decoder's end-of-text id"):
        decoder = Qwen3ForCausalLM(tiny_qwen3_config(num_hidden_layers=LAYERS, eos_token_id=None))
        VisionLanguageModel(config, build_encoder("tiny", "none"), decoder)
