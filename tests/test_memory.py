"""The training-memory estimate (`training/memory.py`) against the model it describes and against measurement.

- Parameter counts: the estimate's, from the config alone, equal the real model's counted parameters (the decoder at
  the three released sizes on the meta device; the bridge and the whole trainable set at a small layout).
- Activations, exactly: what one block saves for the backward pass (`block_saved_bytes`) equals, byte for byte, the
  tensors autograd saves (`torch.autograd.graph.saved_tensors_hooks`) in fp32, in bf16 autocast with fp32 or bf16
  frozen weights, for trainable, frozen and LoRA-adapted blocks (`tiny_decoder/lora.py`'s adapters).
- What trains: gradients, AdamW's moments and LoRA's adapters scale with K and the rank as they must.
- Measured: train.py's step at a reduced layout, in a fresh process (`bench/memory.py --measure`'s code), uses the
  memory the estimate says, within `MARGIN` each way.
- The fits: a known case each way, and the table's cells.

Read next: `training/memory.py` (the estimate), `bench/memory.py` (its table and its measurement).
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_qwen3_config
from torch import nn

from bench import memory as bench_memory
from bridge.adapters import build_bridge
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from tiny_decoder.lora import add_lora
from training.memory import (
    BF16,
    DECODERS,
    FP32,
    LORA_TARGETS,
    MARGIN,
    BridgeSizes,
    GiB,
    block_parameters,
    block_saved_bytes,
    decoder_parameters,
    estimate_training,
    fits,
    lora_parameters,
    projections,
)

# A small decoder shaped like Qwen3: head_dim x heads (4 x 16 = 64) differs from the width (48), GQA 2:1.
SMALL = tiny_qwen3_config(hidden_size=48, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, num_hidden_layers=3)  # fmt: skip


def unique_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # a tied head is one Parameter, counted once


# ----------------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("size", list(DECODERS))
def test_the_decoders_parameters_are_the_models(size):
    config = Qwen3Config.released(DECODERS[size])
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    assert decoder_parameters(config) == unique_parameters(model)
    assert block_parameters(config) == unique_parameters(model.model.layers[0])
    block = model.model.layers[0]
    for name, (n_in, n_out) in projections(config).items():
        layer = getattr(block.self_attn, name, None) or getattr(block.mlp, name)
        assert tuple(layer.weight.shape) == (n_out, n_in), name


@pytest.mark.parametrize("view", ["pooled", "hidden"])
def test_the_bridges_parameters_are_the_adapters(view):
    bridge = build_bridge(view, 768, SMALL.hidden_size, num_tokens=16)
    assert BridgeSizes(view, 768).parameters(SMALL.hidden_size) == unique_parameters(bridge)
    wider = build_bridge(view, 512, SMALL.hidden_size, num_tokens=4, hidden_dim=80)
    assert BridgeSizes(view, 512, hidden_dim=80, num_tokens=4).parameters(SMALL.hidden_size) == unique_parameters(wider)


def test_what_trains_is_the_models_trainable_set():
    from bridge import VisionLanguageModel, VLMConfig
    from vision.encoders import VisionEncoder

    encoder = VisionEncoder(
        name="vit", weights="none", preprocess=None, image_size=224, pooled_dim=768, hidden_dim=768, num_tokens=197
    )
    model = VisionLanguageModel(VLMConfig(encoder="vit", top_k=2), encoder, Qwen3ForCausalLM(SMALL))
    trainable = sum(p.numel() for group in model.parameter_groups().values() for p in group)
    e = estimate_training(SMALL, batch_size=2, top_k=2, precision="fp32")
    assert e.trainable == trainable
    assert e.size("trainable blocks (fp32)") + e.size("frozen decoder weights (fp32)") == 4 * unique_parameters(
        model.decoder
    )


def test_gradients_and_adamw_scale_with_k_and_the_lora_rank():
    config = Qwen3Config.qwen3_0_6b()

    def e(**kw):
        return estimate_training(config, batch_size=8, **kw)

    base, more = e(top_k=3), e(top_k=4)
    assert more.trainable - base.trainable == block_parameters(config)
    for est in (base, more, e(top_k=1, lora_rank=16)):
        assert est.size("AdamW moments (fp32)") == 2 * FP32 * est.trainable
        assert est.size("gradients (fp32)") == FP32 * est.trainable
    r8, r16 = e(top_k=3, lora_rank=8), e(top_k=3, lora_rank=16)
    adapters = lora_parameters(config, 8, LORA_TARGETS, config.num_hidden_layers - 3)
    assert r8.trainable - base.trainable == adapters and r16.trainable - base.trainable == 2 * adapters
    assert r16.size("LoRA adapters (fp32)") == 2 * r8.size("LoRA adapters (fp32)") == 2 * FP32 * adapters
    # r = 16 on a 0.6B block: 360,448 adapter weights, 2.3% of the block's 15.7M
    assert lora_parameters(config, 16, LORA_TARGETS, 1) == 360_448
    assert e(top_k=1, lora_rank=16).trainable < base.trainable  # K=1 + 27 adapted blocks < K=3


# ------------------------------------------------------------------------------------------------ activations


def saved_bytes(model: Qwen3ForCausalLM, x: torch.Tensor, autocast: bool) -> int:
    """Bytes of the distinct storages autograd saves in a forward pass (the parameters themselves left out)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model.hidden_states(inputs_embeds=x)
    return sum(seen.values())


CASES = {  # precision, frozen weights' dtype, top K, LoRA targets
    "fp32, K=1": ("fp32", "fp32", 1, ()),
    "bf16 autocast, frozen fp32, K=1": ("bf16", "fp32", 1, ()),
    "bf16 autocast, frozen bf16, K=1": ("bf16", "bf16", 1, ()),
    "bf16 autocast, frozen bf16, K=0, LoRA on all": ("bf16", "bf16", 0, LORA_TARGETS),
    "bf16 autocast, frozen fp32, K=1, LoRA on q, v, down": ("bf16", "fp32", 1, ("q_proj", "v_proj", "down_proj")),
    "fp32, K=0, LoRA on o, gate, up": ("fp32", "fp32", 0, ("o_proj", "gate_proj", "up_proj")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_blocks_saved_tensors_are_what_autograd_saves(case):
    precision, frozen, top_k, targets = CASES[case]
    rank, autocast, L = 3, precision == "bf16", SMALL.num_hidden_layers
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(SMALL).train().requires_grad_(False)
    model.to(torch.float32 if frozen == "fp32" else torch.bfloat16)
    for block in model.model.layers[L - top_k :]:  # a top block: fp32 weights that train
        block.float().requires_grad_(True)
    if targets:  # train.py's adapters (fp32), on the blocks below the top K
        add_lora(model, rank, 2.0 * rank, targets, list(range(L - top_k)))
    B, T = 2, 7
    residual = FP32 if frozen == "fp32" else BF16
    x = torch.randn(B, T, SMALL.hidden_size, dtype=model.dtype, requires_grad=True)  # the bridge's tokens

    def per_block(trains: bool) -> int:
        extra = {} if trains else {"lora_targets": targets, "lora_rank": rank if targets else 0}
        norm = FP32 if trains else residual
        parts = block_saved_bytes(
            SMALL, autocast=autocast, residual_bytes=residual, norm_weight_bytes=norm, weights_train=trains, **extra
        )
        return B * T * sum(size for _, size in parts)

    expected = top_k * per_block(True) + (L - top_k) * per_block(False)
    expected += 2 * B * T * SMALL.head_dim * residual + B * T * (4 * SMALL.hidden_size + 4)  # RoPE; final norm
    if autocast:  # every fp32 matrix's bf16 copy is saved: the top blocks', frozen fp32 blocks', the adapters'
        fp32_blocks = top_k + (L - top_k if frozen == "fp32" else 0)
        matrices = sum(a * b for a, b in projections(SMALL).values())
        expected += BF16 * (fp32_blocks * matrices + lora_parameters(SMALL, rank, targets, L - top_k))
    assert saved_bytes(model, x, autocast) == expected


def test_checkpointing_keeps_each_blocks_input_only():
    e = estimate_training(Qwen3Config.qwen3_0_6b(), batch_size=8, grad_checkpointing=True, device="cpu")
    plain = estimate_training(Qwen3Config.qwen3_0_6b(), batch_size=8, device="cpu")
    tokens = 8 * (16 + 2 + 48)
    # 28 block inputs [tokens, 1024] in bf16 (the residual stream, with the frozen weights in bf16 by default), RoPE's
    # cos and sin, the final norm, the bridge: under a tenth of the activations without checkpointing
    assert 28 * tokens * 1024 * 2 < e.size("activations") < 0.1 * plain.size("activations")
    assert e.total("backward") < plain.total("backward") and e.peak() < plain.peak()


# -------------------------------------------------------------------------------------------------- measurement


def test_a_measured_step_uses_the_estimated_memory():
    """train.py's step at Qwen3-0.6B's width, 2 blocks, 8,192 rows of vocabulary, batch 4, bf16 autocast with the
    frozen weights in bf16, K = 1: resident memory, the forward pass's peak, what it keeps for the backward pass, and
    the peak of the rest, each within MARGIN of the estimate either way. (On this CPU they agree within 5%;
    docs/memory.md has the full set.)"""
    case = dict(size="0.6b", precision="bf16", frozen="bf16", lora=16, checkpointing=False, batch=4, top_k=1, visual=16,
                target=24, threads=1, layers=2, vocab=8192)  # fmt: skip
    measured = bench_memory.run_case(case)
    for name, (got, expected) in bench_memory.compared(case, measured).items():
        assert 1 / MARGIN <= got / expected <= MARGIN, (name, got, expected)


# ------------------------------------------------------------------------------------------------------- fits


def test_what_fits_where():
    four_b = Qwen3Config.released("Qwen/Qwen3-4B-Base")
    big = estimate_training(four_b, batch_size=32, precision="bf16", frozen_dtype="bf16")
    assert not fits(big, 24 * GiB) and fits(big, 80 * GiB)
    checkpointed = estimate_training(  # the same run with --grad-checkpointing fits a 24 GB card
        four_b, batch_size=32, precision="bf16", frozen_dtype="bf16", grad_checkpointing=True
    )
    assert fits(checkpointed, 24 * GiB)
    assert fits(big, big.peak() * MARGIN) and not fits(big, big.peak() * MARGIN - 1)
    assert big.describe().startswith("36 layers d=2560, K=3, batch 32 x 66 positions, bf16 (frozen bf16): peak")


def test_the_tables_cells_say_the_same(capsys):
    assert bench_memory.main(["--decoder-size", "4b", "--top-k", "3", "--lora-rank", "0", "--batch-size", "32",
                              "--precision", "bf16"]) == 0  # fmt: skip
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| Qwen3-4B-Base")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    # decoder, trains, trainable, batch, peak, 24 GB, 80 GB, peak with checkpointing, 24 GB, 80 GB
    assert cells[1:5] == ["top 3", "409.7M", "32", "23.0"] and cells[5:7] == ["**no**", "yes"]
    assert cells[8:10] == ["yes", "yes"]


def test_a_run_logs_its_estimate_before_loading_weights_and_warns_when_the_card_is_smaller(tmp_path, monkeypatch):
    """`training.run.report_memory` reads only the decoder's config.json (no weights in the folder), logs the
    estimate's line, and on a GPU smaller than the estimate says so in one warning line (the run goes on)."""
    import json
    from types import SimpleNamespace

    import torch

    from tiny_decoder import Qwen3Config
    from training.config import TrainConfig
    from training.run import report_memory

    decoder = tmp_path / "qwen3-4b"
    decoder.mkdir()
    (decoder / "config.json").write_text(json.dumps(Qwen3Config.released("Qwen/Qwen3-4B-Base").to_dict()))
    cfg = TrainConfig.from_dict({"decoder": str(decoder), "encoder": "vit", "batch_size": 32, "precision": "bf16"})
    lines: list[tuple[str, str | None]] = []

    def log(text: str, style: str | None = None) -> None:
        lines.append((text, style))

    card = SimpleNamespace(total_memory=24 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: card)
    estimate = report_memory(cfg, torch.device("cuda"), True, log)
    assert estimate is not None and estimate.peak() > 20 * 2**30  # 4B at batch 32, without checkpointing
    assert lines[0][0].startswith("memory estimate (training/memory.py, docs/memory.md): ")
    assert lines[1][0].startswith("warning: this run is estimated to need ") and lines[1][1] == "yellow"
    lines.clear()
    card.total_memory = 80 * 2**30
    report_memory(cfg, torch.device("cuda"), True, log)
    assert len(lines) == 1  # fits an 80 GB card: no warning
    demo = TrainConfig.from_dict({"decoder": "demo", "encoder": "tiny"})
    assert report_memory(demo, torch.device("cpu"), False, log) is None  # the demo's tiny pieces: no estimate
