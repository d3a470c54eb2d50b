"""LoRA on the hand-written decoder (tiny_decoder/lora.py) and in the vision-language model (bridge/vlm.py).

The checks the issue names: with B = 0 the adapted model *is* the base model; a merged model computes what the
unmerged one does; an adapter saved here loads onto transformers' Qwen3 through peft and gives the same logits; and
each bad setting is one line.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_hf_model, tiny_qwen3_config

from bridge import VisionLanguageModel, VLMConfig
from errors import UserError
from tiny_decoder import Qwen3ForCausalLM
from tiny_decoder.lora import TARGETS, LoRALinear, add_lora, lora_layers, merge_lora, save_peft_adapter
from vision import build_encoder
from weights_loader import load_qwen3


def random_b(decoder: torch.nn.Module, std: float = 0.05) -> None:
    """Give every adapter a nonzero B, as training would: otherwise every LoRA check passes trivially."""
    with torch.no_grad():
        for adapter in lora_layers(decoder).values():
            adapter.lora_B.weight.normal_(0, std)


def tiny_vlm(**config) -> VisionLanguageModel:
    torch.manual_seed(0)
    decoder = Qwen3ForCausalLM(tiny_qwen3_config(num_hidden_layers=3))
    settings = dict(encoder="tiny", encoder_weights="none", num_visual_tokens=4, top_k=1) | config
    return VisionLanguageModel(VLMConfig(**settings), build_encoder("tiny", "none"), decoder)


def test_with_b_zero_the_adapted_model_is_the_base_model_exactly():
    torch.manual_seed(0)
    base = Qwen3ForCausalLM(tiny_qwen3_config())
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        before = base(ids)
        adapters = add_lora(base, 4, 8.0, TARGETS, [0, 1])
        after = base(ids)
    assert len(adapters) == 2 * len(TARGETS)
    assert torch.equal(before, after)  # B = 0: not close, identical


def test_merging_gives_the_same_logits_and_plain_linear_layers():
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(tiny_qwen3_config())
    add_lora(model, 4, 8.0, TARGETS, [0, 1])
    random_b(model)
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        unmerged = model(ids)
        assert merge_lora(model) == 2 * len(TARGETS)
        merged = model(ids)
    assert not lora_layers(model)
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # the weight map is the base one again
    assert (unmerged - merged).abs().max().item() < 1e-5


def test_an_adapter_saved_here_loads_onto_transformers_qwen3_through_peft(tmp_path):
    """Our decoder with adapters on blocks 0 and 1 -> `save_peft_adapter` -> peft's `PeftModel.from_pretrained` on
    transformers' Qwen3 with the same base weights -> the same logits (fp32)."""
    peft = pytest.importorskip("peft")
    hf = make_hf_model(seed=1)  # random, RMSNorm weights randomised, head_dim != hidden // heads, 3 blocks
    hf.save_pretrained(tmp_path / "base")
    ours = load_qwen3(tmp_path / "base")
    add_lora(ours, 4, 12.0, ("q_proj", "v_proj", "down_proj"), [0, 1])
    random_b(ours)
    save_peft_adapter(ours, tmp_path / "adapter", base=str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["layers_to_transform"]) == (4, 12.0, [0, 1])
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    ids = torch.randint(0, 256, (2, 11))
    with torch.no_grad():
        ref = theirs(input_ids=ids).logits
        got = ours(ids)
    assert (got - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
    with torch.no_grad(), theirs.disable_adapter():
        plain = theirs(input_ids=ids).logits
    assert (got - plain).abs().max().item() > 1e-3  # the adapters changed the logits: the comparison means something


def test_in_the_vlm_lora_covers_the_blocks_below_the_top_k_and_trains_with_its_own_group():
    model = tiny_vlm(top_k=1, lora_rank=2, lora_targets="q_proj,o_proj")
    assert sorted(model.lora) == [f"model.layers.{i}.self_attn.{n}" for i in (0, 1) for n in ("o_proj", "q_proj")]
    assert not lora_layers(model.decoder.model.layers[2])  # the top block trains in full: no adapter
    groups = model.parameter_groups()
    assert len(groups["lora"]) == 8 and all(p.requires_grad for p in groups["lora"])
    assert not model.decoder.model.layers[0].self_attn.q_proj.base_layer.weight.requires_grad
    state = model.trainable_state_dict()
    assert "decoder.model.layers.0.self_attn.q_proj.lora_A.weight" in state
    assert "decoder.model.layers.2.self_attn.q_proj.weight" in state  # top-K names are unchanged
    assert "LoRA r=2 a=4 (q_proj,o_proj, blocks 0-1)" in model.summary()
    # a checkpoint's tensors load back into a model built from the same settings
    random_b(model.decoder)
    state = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    again = tiny_vlm(top_k=1, lora_rank=2, lora_targets="q_proj,o_proj")
    again.load_trainable_state_dict(state)
    assert all(torch.equal(again.trainable_state_dict()[k], v) for k, v in state.items())


def test_gradients_reach_only_the_adapters_the_bridge_and_the_top_block():
    model = tiny_vlm(top_k=1, lora_rank=2)
    ids = torch.randint(2, 64, (2, 6))
    labels = ids.clone()
    labels[:, :2] = -100
    model(ids, labels, pixel_values=torch.rand(2, 3, 48, 48)).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(".lora_B." in n for n in with_grad) and any(n.startswith("bridge.") for n in with_grad)
    assert not any(".base_layer." in n for n in with_grad)
    assert not any("embed_tokens" in n for n in with_grad)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lora_rank": 2, "lora_targets": "qproj"}, "names no linear layer of a Qwen3 block; accepted: q_proj, k_proj"),
        ({"lora_rank": 2, "lora_targets": "lm_head"}, "lm_head is refused: the loss reads its weight directly"),
        ({"lora_rank": 2, "lora_targets": "embed_tokens"}, "embed_tokens is refused"),
        ({"lora_rank": -1}, "lora_rank=-1 is invalid; expected an integer >= 0"),
        ({"lora_rank": 2, "lora_alpha": 0.0}, "lora_alpha=0.0 is invalid"),
        ({"lora_rank": 17}, "--lora-rank 17 is invalid for k_proj, a 32 -> 16 layer; accepted: 1..16"),
        ({"lora_rank": 2, "top_k": 3}, "--top-k 3 trains all 3: lower --top-k, or leave out --lora-rank"),
    ],
)
def test_a_bad_lora_setting_is_one_line(settings, message):
    with pytest.raises(UserError) as caught:
        tiny_vlm(**settings)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_layer_is_w_plus_alpha_over_r_times_b_a():
    """The maths, on one layer: W x + (alpha / r) B A x, with B initialised to zero."""
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5, bias=False)
    layer = LoRALinear(base, rank=2, alpha=3.0)
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(4, 6)
    expected = x @ base.weight.T + (3.0 / 2) * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)
