"""LoRA: low-rank adapters on the decoder's linear layers, with the pretrained weights frozen.

A frozen linear layer W [out, in] gets a trainable detour of rank r:

    y = W x + (alpha / r) * B (A x)          A [r, in] random, B [out, r] zero at the start

so training starts from exactly the pretrained model (B = 0), and learns an update B A of rank r: r x (in + out)
parameters instead of in x out. After training, W + (alpha / r) B A is one matrix again (`merge_lora`): inference
costs nothing extra.

Why not the `peft` library? It is the ecosystem's tool for this, and its names are kept here on purpose: a LoRA
layer holds `base_layer`, `lora_A` and `lora_B`, so our decoder's adapter keys are peft's saved keys without its
wrapper's `base_model.model.` prefix, and `save_peft_adapter` writes a folder that peft's `PeftModel.from_pretrained`
loads onto transformers' `Qwen3ForCausalLM` (tests/test_lora.py checks the logits agree). But importing peft imports
transformers and accelerate (about 5 s here), and this project's library never imports transformers; and peft's
`get_peft_model` wraps the model (so `decoder.model` is no longer our `Qwen3Model`) and freezes every other
parameter (which undoes top-K). What LoRA needs from it fits in this file: a layer, an injection, a merge.

References:
- Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", https://arxiv.org/abs/2106.09685
  (alpha / r scaling; B initialised to zero; A with a random init)
- peft's LoRA layer (`peft/tuners/lora/layer.py`: `base_layer`, `lora_A`, `lora_B`, kaiming-uniform A, zero B) and
  adapter files (`adapter_config.json`, `adapter_model.safetensors`), https://huggingface.co/docs/peft

Read next: `bridge/vlm.py` (where the adapters go: the blocks below the top K).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from errors import UserError

# The linear layers of a Qwen3 block, by transformers' names (tiny_decoder/model.py uses the same).
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
TARGETS = (*ATTENTION, *MLP)
# Not adaptable: the loss reads `lm_head.weight` (and the embedding tied to it) directly, in the chunked cross-entropy
# (tiny_decoder/model.py) and in occlusion maps (explain/occlusion.py), so an adapter there would be silently bypassed.
REFUSED = ("lm_head", "embed_tokens")
PEFT_PREFIX = "base_model.model."  # what peft's wrapper adds in front of the model's own names


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` (`base_layer`) plus the trainable low-rank update (alpha / r) * B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if not 1 <= rank <= min(base.in_features, base.out_features):
            raise UserError(
                f"--lora-rank {rank} is invalid for a {base.in_features} -> {base.out_features} layer; accepted: "
                f"1..{min(base.in_features, base.out_features)} (a rank above the smaller side adds nothing)"
            )
        self.base_layer = base
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        device, dtype = base.weight.device, torch.float32  # the adapters train, so they stay in fp32
        self.lora_A = nn.Linear(base.in_features, rank, bias=False, device=device, dtype=dtype)  # [r, in]
        self.lora_B = nn.Linear(rank, base.out_features, bias=False, device=device, dtype=dtype)  # [out, r]
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default (nn.Linear's own init)
        nn.init.zeros_(self.lora_B.weight)  # B = 0: the adapted layer starts as the pretrained one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # [..., out], the frozen path
        # Under autocast the matmuls cast for themselves; without it, x (bf16 when the frozen weights are stored in bf16)
        # meets the fp32 adapters in their dtype. Casting under autocast too would keep an extra copy of x per adapter.
        h = x if torch.is_autocast_enabled(x.device.type) else x.to(self.lora_A.weight.dtype)
        update = self.lora_B(self.lora_A(h))  # [..., in] -> [..., r] -> [..., out]
        return y + (self.scaling * update).to(y.dtype)

    def merged(self) -> nn.Linear:
        """The base layer with the update folded in: W + (alpha / r) B A, one matrix."""
        with torch.no_grad():
            delta = self.lora_B.weight @ self.lora_A.weight * self.scaling  # [out, r] @ [r, in] -> [out, in]
            self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
        return self.base_layer

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def parse_targets(text: str) -> tuple[str, ...]:
    """`--lora-targets`: comma-separated linear-layer names of a Qwen3 block, or `all` (every one of them)."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if names == ("all",):
        return TARGETS
    refused = [n for n in names if n in REFUSED]
    if refused:
        raise UserError(
            f"--lora-targets {refused[0]} is refused: the loss reads its weight directly, so an adapter there would "
            f"be bypassed; accepted: {', '.join(TARGETS)} or all"
        )
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise UserError(
            f"--lora-targets {text!r} names no linear layer of a Qwen3 block; accepted: {', '.join(TARGETS)} or all"
        )
    return tuple(dict.fromkeys(names))


def layer_shapes(config) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer of a Qwen3 block, by name, from its `Qwen3Config`."""
    d, q, kv, mlp = (config.hidden_size, config.num_attention_heads * config.head_dim,
                     config.num_key_value_heads * config.head_dim, config.intermediate_size)  # fmt: skip
    return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
            "gate_proj": (d, mlp), "up_proj": (d, mlp), "down_proj": (mlp, d)}  # fmt: skip


def check_rank(rank: int, targets: tuple[str, ...], config) -> None:
    """A rank above the smaller side of an adapted layer adds nothing (B A is then full rank already): refused in one
    line, from the decoder's config alone, before any weight is loaded."""
    shapes = layer_shapes(config)
    name = min(targets, key=lambda t: min(shapes[t]))
    if rank > min(shapes[name]):
        raise UserError(
            f"--lora-rank {rank} is invalid for {name}, a {shapes[name][0]} -> {shapes[name][1]} layer; accepted: "
            f"1..{min(shapes[name])} (a rank above the smaller side adds nothing)"
        )


def add_lora(
    decoder: nn.Module, rank: int, alpha: float, targets: tuple[str, ...], layers: list[int]
) -> dict[str, LoRALinear]:
    """Replace each `targets` linear layer of the blocks `layers` (indices) of `decoder.model.layers` by a
    `LoRALinear` around it, in place (after the pretrained weights are loaded: `q_proj.weight` becomes
    `q_proj.base_layer.weight`). Returns the adapters by their module name, e.g. `model.layers.0.self_attn.q_proj`."""
    adapters = {}
    blocks = decoder.model.layers
    for index in layers:
        for name, module in list(blocks[index].named_modules()):
            leaf = name.rpartition(".")[2]
            if leaf not in targets:
                continue
            if not isinstance(module, nn.Linear):
                raise UserError(f"--lora-targets {leaf}: model.layers.{index}.{name} is not a linear layer")
            parent = blocks[index].get_submodule(name.rpartition(".")[0]) if "." in name else blocks[index]
            adapter = LoRALinear(module, rank, alpha)
            setattr(parent, leaf, adapter)
            adapters[f"model.layers.{index}.{name}"] = adapter
    missing = set(targets) - {name.rpartition(".")[2] for name in adapters}
    if layers and missing:
        raise UserError(
            f"--lora-targets {sorted(missing)[0]}: this decoder's blocks have no such linear layer; accepted: "
            f"{', '.join(TARGETS)} (transformers' Qwen3 names)"
        )
    return adapters


def lora_layers(module: nn.Module) -> dict[str, LoRALinear]:
    """Every `LoRALinear` in `module`, by name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(decoder: nn.Module) -> int:
    """Fold every adapter into its base layer's weight and put the plain `nn.Linear` back, in place: the model then
    computes the same function with no extra cost (and no adapter to train). Returns how many were merged."""
    found = lora_layers(decoder)
    for name, adapter in found.items():
        parent_name, _, leaf = name.rpartition(".")
        setattr(decoder.get_submodule(parent_name), leaf, adapter.merged())
    return len(found)


def peft_adapter_config(rank: int, alpha: float, targets: tuple[str, ...], layers: list[int], base: str) -> dict:
    """peft's `adapter_config.json` for these adapters (`LoraConfig` fields; see peft's docs)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": list(targets),
        "layers_to_transform": list(layers),
        "layers_pattern": "layers",
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "inference_mode": True,
    }


def save_peft_adapter(decoder: nn.Module, directory: str | Path, base: str) -> Path:
    """Write the decoder's adapters as a peft adapter folder (`adapter_model.safetensors` and
    `adapter_config.json`), which `peft.PeftModel.from_pretrained(Qwen3ForCausalLM..., directory)` loads onto
    transformers' Qwen3: the keys are ours with peft's wrapper prefix (`base_model.model.model.layers.0...`)."""
    found = lora_layers(decoder)
    if not found:
        raise UserError("this model has no LoRA adapters to save (train with --lora-rank R)")
    first = next(iter(found.values()))
    layers = sorted({int(name.split(".")[2]) for name in found})
    targets = tuple(dict.fromkeys(name.rpartition(".")[2] for name in found))
    tensors = {}
    for name, adapter in found.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = adapter.lora_A.weight.detach().float().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = adapter.lora_B.weight.detach().float().contiguous()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = peft_adapter_config(first.rank, first.alpha, targets, layers, base)
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
