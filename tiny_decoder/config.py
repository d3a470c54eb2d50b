"""The Qwen3 configuration, as one validated dataclass.

Field names are exactly the keys of the hub's `config.json` (and of transformers' `Qwen3Config`), so a checkpoint's
config reads straight in and a reader can compare the two side by side. The dataclass is frozen: loaders build a
config once and never change it.

Only what our decoder implements is accepted. Options it does not implement (rope scaling, attention biases,
sliding-window attention, another activation) are refused with an error that names the key, instead of being
silently ignored and producing a subtly different model.

`Qwen3Config.released("Qwen/Qwen3-1.7B-Base")` is a released checkpoint's config without the network, from the table
`RELEASED` at the end of this file (the Base models from 0.6B to 8B, their post-trained siblings, a 2507 update).

References:
- Qwen3 technical report: https://arxiv.org/abs/2505.09388
- the released checkpoints' `config.json` files on the Hugging Face Hub (`RELEASED`, each with its source)
- transformers `models/qwen3/configuration_qwen3.py`

Read next: `tiny_decoder/model.py` (the model these fields build), `weights_loader.py` (reads `config.json`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from errors import UserError

# Keys that appear in real `config.json` files but do not change the model we build (bookkeeping, defaults of the
# inference engine, or ids that live in the tokenizer). They are read and dropped, never treated as unknown.
_IGNORED_KEYS = {
    "architectures",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "use_cache",
    "max_window_layers",
    "_name_or_path",
    "output_attentions",
    "output_hidden_states",
}


@dataclass(frozen=True)
class Qwen3Config:
    """Hyper-parameters of a Qwen3 decoder. Defaults are Qwen3-0.6B-Base's."""

    vocab_size: int = 151_936  # embedding rows; the tokenizer uses only 151,669 of them
    hidden_size: int = 1024  # d_model
    intermediate_size: int = 3072  # SwiGLU hidden width
    num_hidden_layers: int = 28
    num_attention_heads: int = 16  # query heads
    num_key_value_heads: int = 8  # grouped-query attention: 2 query heads share each key/value head
    head_dim: int = 128  # note 16 * 128 = 2048 != hidden_size: q_proj widens, o_proj narrows back
    hidden_act: str = "silu"
    max_position_embeddings: int = 32_768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    tie_word_embeddings: bool = True  # lm_head reuses the embedding matrix
    attention_bias: bool = False
    attention_dropout: float = 0.0
    bos_token_id: int | None = None
    eos_token_id: int | None = 151_643  # <|endoftext|> for the Base model
    pad_token_id: int | None = None
    model_type: str = "qwen3"
    initializer_range: float = 0.02  # std of the random initialisation (unused when weights are loaded)

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"Qwen3Config: {name}={value!r} is invalid; expected a positive integer")
        if self.model_type != "qwen3":
            raise UserError(f"Qwen3Config: model_type={self.model_type!r} is not supported; expected 'qwen3'")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError(
                f"Qwen3Config: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; grouped-query attention needs it to be"
            )
        if self.head_dim % 2:
            raise UserError(f"Qwen3Config: head_dim={self.head_dim} must be even (RoPE rotates pairs of halves)")
        if self.hidden_act != "silu":
            raise UserError(f"Qwen3Config: hidden_act={self.hidden_act!r} is not supported; expected 'silu'")
        if self.attention_bias:
            raise UserError("Qwen3Config: attention_bias=true is not supported; Qwen3 projections have no bias")
        if not (self.rms_norm_eps > 0 and self.rope_theta > 0):
            raise UserError("Qwen3Config: rms_norm_eps and rope_theta must be positive numbers")
        if not self.initializer_range > 0:
            raise UserError(f"Qwen3Config: initializer_range={self.initializer_range!r} must be a positive number")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise UserError(f"Qwen3Config: attention_dropout={self.attention_dropout} must be in [0, 1)")
        if not isinstance(self.tie_word_embeddings, bool):
            raise UserError(f"Qwen3Config: tie_word_embeddings={self.tie_word_embeddings!r} must be true or false")

    @property
    def num_key_value_groups(self) -> int:
        """How many query heads share one key/value head."""
        return self.num_attention_heads // self.num_key_value_heads

    # ------------------------------------------------------------------ reading and writing config.json

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Qwen3Config:
        """Build a config from a `config.json` dictionary (the hub's or transformers 5's spelling)."""
        d = dict(raw)
        # RoPE base: the hub's Qwen3 files say `rope_theta` (with `rope_scaling: null`); transformers 5 writes
        # `rope_parameters: {rope_theta, rope_type}` instead. Both mean plain RoPE with that base.
        rope_scaling = d.pop("rope_scaling", None)
        if rope_scaling is not None:
            raise UserError(f"Qwen3Config: rope_scaling={rope_scaling!r} is not supported; only plain RoPE is")
        rope_parameters = d.pop("rope_parameters", None)
        if rope_parameters is not None:
            rope_type = rope_parameters.get("rope_type", "default")
            if rope_type != "default":
                raise UserError(f"Qwen3Config: rope_type={rope_type!r} is not supported; expected 'default'")
            extra = set(rope_parameters) - {"rope_type", "rope_theta"}
            if extra:
                raise UserError(f"Qwen3Config: rope_parameters keys {sorted(extra)} are not supported")
            if "rope_theta" in rope_parameters:
                d["rope_theta"] = rope_parameters["rope_theta"]
        # Sliding-window attention is off in every Qwen3 dense checkpoint; refuse it if switched on.
        if d.pop("use_sliding_window", False):
            raise UserError("Qwen3Config: use_sliding_window=true is not supported")
        d.pop("sliding_window", None)
        layer_types = d.pop("layer_types", None)
        if layer_types is not None and any(t != "full_attention" for t in layer_types):
            raise UserError("Qwen3Config: layer_types other than 'full_attention' are not supported")
        for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
            if isinstance(d.get(key), list):  # some configs list several ids; the first is the main one
                d[key] = d[key][0] if d[key] else None
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - _IGNORED_KEYS
        if unknown:
            raise UserError(
                f"Qwen3Config: unknown config keys {sorted(unknown)}; this decoder supports {sorted(known)}"
            )
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json_file(cls, path: str | Path) -> Qwen3Config:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"config file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` dictionary, in the hub's spelling."""
        d = asdict(self)
        d["architectures"] = ["Qwen3ForCausalLM"]
        d["rope_scaling"] = None
        return d

    # ------------------------------------------------------------------ presets

    @classmethod
    def qwen3_0_6b(cls) -> Qwen3Config:
        """Qwen3-0.6B(-Base): 28 layers, d=1024, 16 query heads and 8 key/value heads of width 128."""
        return cls()

    @classmethod
    def released(cls, name: str) -> Qwen3Config:
        """The config of a released checkpoint by its hub id (`RELEASED`), as its `config.json` reads, offline.

        `Qwen3Config.released("Qwen/Qwen3-4B-Base").hidden_size == 2560`; an unknown name is a `UserError` listing
        the known ones. Any other Qwen3 loads from its own `config.json` all the same: this table only lets tests and
        estimates know a release's shape without the network.
        """
        if name not in RELEASED:
            raise UserError(f"{name!r} is not a Qwen3 release this table knows; known: {', '.join(RELEASED)}")
        return cls(bos_token_id=151_643, **RELEASED[name])


# ---------------------------------------------------------------------------------------------------------------------
# The released dense Qwen3 checkpoints
# ---------------------------------------------------------------------------------------------------------------------

# What the released `config.json` files say, by the keys that differ between them (every other key is the default
# above, the same in all of them: vocabulary 151,936, head_dim 128, 8 key/value heads, RMSNorm eps 1e-6, no biases;
# `bos_token_id` is 151643 in each). The sizes differ in width, depth and query heads, and in one more thing: the
# embedding is tied to the LM head up to 4B, and 8B is the first with a head of its own (`tie_word_embeddings`
# false in both 8B files below, true in the smaller ones).
_SIZES: dict[str, dict[str, Any]] = {
    "0.6B": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16),
    "1.7B": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16),
    "4B": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
    "8B": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        tie_word_embeddings=False,
    ),
}
# Three kinds of release share each size's weights' shapes and differ in context and end of text:
# - Base (pretraining only, what this project trains): 32,768 positions, RoPE base 1e6, end of text <|endoftext|>;
# - post-trained, April 2025 (thinking and non-thinking chat in one model): 40,960 positions, eos <|im_end|>;
# - the 2507 updates (Qwen3-4B-Instruct-2507 below): 262,144 positions, RoPE base 5e6, eos <|im_end|>.
# <|im_end|> (151645) closes a turn of the chat template; a Base model never learned it (`weights_loader.py`'s
# `load_tokenizer` keeps <|endoftext|> as the end of a caption whatever config.json says).
_BASE = dict(max_position_embeddings=32_768, rope_theta=1_000_000.0, eos_token_id=151_643)
_POST_TRAINED = dict(max_position_embeddings=40_960, rope_theta=1_000_000.0, eos_token_id=151_645)
_UPDATE_2507 = dict(max_position_embeddings=262_144, rope_theta=5_000_000.0, eos_token_id=151_645)

RELEASED: dict[str, dict[str, Any]] = {
    # huggingface.co/Qwen/Qwen3-0.6B-Base/blob/main/config.json, written out key by key in rehearse/qwen3.py and
    # tests/test_weights_loader.py.
    "Qwen/Qwen3-0.6B-Base": _SIZES["0.6B"] | _BASE,
    # huggingface.co/Qwen/Qwen3-1.7B-Base/blob/main/config.json, as public notes quote it (28 layers, width 2048,
    # 16 query and 8 key/value heads, 32,768 positions, tied, <|endoftext|> as eos and pad); MLP 6144 and RoPE base
    # 1e6 as slime's scripts/models/qwen3-1.7B.sh gives them (--ffn-hidden-size 6144, --rotary-base 1000000).
    "Qwen/Qwen3-1.7B-Base": _SIZES["1.7B"] | _BASE,
    # huggingface.co/Qwen/Qwen3-4B-Base/blob/main/config.json, as fine-tunes of it copy it (MegaScience/
    # Qwen3-4B-MegaScience: eos 151643, 32,768 positions, 36 layers, 2560, MLP 9728, 32/8 heads); tied, as Qwen3-4B.
    "Qwen/Qwen3-4B-Base": _SIZES["4B"] | _BASE,
    # huggingface.co/Qwen/Qwen3-8B-Base/blob/main/config.json, as Chen-Oliver/qwen3-8b-base copies it whole
    # (tie_word_embeddings false, eos 151643, 32,768 positions).
    "Qwen/Qwen3-8B-Base": _SIZES["8B"] | _BASE,
    # The post-trained releases' config.json files, as public model repos copy them (whole, or in a fine-tune):
    # Qwen3-0.6B in TensorStack/TextEncoder (Qwen-3-06B/), Qwen3-1.7B in Pathstudy/copath_router, Qwen3-4B and 8B in
    # citsjtu2020/LLM-Prof (sglang/Model_Config.md) and thejaminator's "Copy config.json from Qwen/Qwen3-8B".
    "Qwen/Qwen3-0.6B": _SIZES["0.6B"] | _POST_TRAINED,
    "Qwen/Qwen3-1.7B": _SIZES["1.7B"] | _POST_TRAINED,
    "Qwen/Qwen3-4B": _SIZES["4B"] | _POST_TRAINED,
    "Qwen/Qwen3-8B": _SIZES["8B"] | _POST_TRAINED,
    # huggingface.co/Qwen/Qwen3-4B-Instruct-2507/blob/main/config.json, as jaman21/Qwen3-4B-Instruct copies it
    # (rope_theta 5000000, 262,144 positions, eos 151645, tied) and unsloth's GGUF of it records it (context 262144,
    # rope freq_base 5e6).
    "Qwen/Qwen3-4B-Instruct-2507": _SIZES["4B"] | _UPDATE_2507,
}
