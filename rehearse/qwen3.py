"""`Qwen/Qwen3-0.6B-Base` as its hub repo holds it, with random weights in place of the trained ones.

The snapshot holds the release's files under the release's names:

    config.json             the release's values (`QWEN3_0_6B_BASE_CONFIG`: 28 blocks of width 1024, 16 query and 8
                            key/value heads of width 128, SwiGLU 3072, vocabulary 151,936, RoPE base 1e6, tied head)
    generation_config.json  end-of-text 151643
    model.safetensors       every tensor of the release, in its dtype (bf16), named as transformers names them, and
                            `lm_head.weight` stored as a copy of the embedding, as the release stores it (1.5 GB)
    tokenizer.json          the real Qwen3 tokenizer (`../shared/qwen3-tokenizer`)
    tokenizer_config.json   the shared file, with the Base model's end-of-text `<|endoftext|>` as eos and pad

The tensor names and shapes are written out here from the config (`release_tensors`), not taken from our decoder, so
that a name our loader gets wrong fails here as it would on the real file. Values are N(0, 0.02) (norms 1), the
initialisation transformers uses, drawn from a fixed seed.

One departure from random: a random model never ends its text (end-of-text is one token in 151,936), and the
rehearsal checks that generation stops at end-of-text. So two coordinates of three token embeddings, and of the final
norm, give the random model a two-step grammar (`EndOfTextGrammar`): after the prompts' last token ":" it writes
" picture", and after " picture" it writes `<|endoftext|>`. Every other value stays random, and the loss of a real
caption under this model is about 13, near a uniform model's ln(151,936) = 11.9.

Sources: config.json from https://huggingface.co/Qwen/Qwen3-0.6B-Base/blob/main/config.json (its values, as quoted
in public code); generation_config.json's end-of-text is config.json's (its other values are not checked); that the
release stores `lm_head.weight` beside the tied embedding: its 1.5 GB model.safetensors (751.6M bf16 values) and
LlamaFactory issue 8289 (hiyouga/LlamaFactory) on Qwen3's small tied models.

Read next: `rehearse/encoders.py` (the frozen encoders' snapshots).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from .hub_cache import snapshot_folder, write_json

DECODER_REPO = "Qwen/Qwen3-0.6B-Base"
END_OF_TEXT = 151643  # <|endoftext|>: the Base model's end of text, and its padding

QWEN3_0_6B_BASE_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": END_OF_TEXT,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
# Only eos_token_id is read by this project (weights_loader.load_tokenizer falls back to it).
GENERATION_CONFIG = {"bos_token_id": 151643, "eos_token_id": END_OF_TEXT, "do_sample": False, "max_new_tokens": 2048}


@dataclass(frozen=True)
class EndOfTextGrammar:
    """Three tokens with designed values in two coordinates of the embedding (and of the final norm's gain), so that
    the random model writes `word` after `prompt_end` and end-of-text after `word`.

    With a tied head, the logit of token i at a position whose input token is t is, in these two coordinates, about
    c * (s_i . s_t) for the designed states s, where c = readout / rms(hidden state); every other token has s = 0.
    After ":" (s = (1, 0)): " picture" scores 1.5, ":" itself 1, end-of-text 0. After " picture" (s = (1.5, -1)):
    end-of-text scores 5, " picture" 3.25, ":" 1.5. At `unit` 30 and `readout` 0.05 the winner leads by about 7
    logits after ":" and by more than 20 after " picture" (the random logits are within about +-3), in fp32 and under
    bf16 autocast alike (measured with three random sets of visual tokens)."""

    prompt_end: int = 25  # ":", the last token of "Caption:" and of "Question: ... Answer:"
    word: int = 6802  # " picture" (kept out of the rehearsal's captions)
    end_of_text: int = END_OF_TEXT
    dims: tuple[int, int] = (1022, 1023)
    unit: float = 30.0
    readout: float = 0.05

    def states(self) -> dict[int, tuple[float, float]]:
        return {self.prompt_end: (1.0, 0.0), self.word: (1.5, -1.0), self.end_of_text: (0.0, -5.0)}

    def apply(self, embedding: torch.Tensor, final_norm: torch.Tensor) -> None:
        for token, state in self.states().items():
            for dim, value in zip(self.dims, state, strict=True):
                embedding[token, dim] = value * self.unit
        for dim in self.dims:
            final_norm[dim] = self.readout


GRAMMAR = EndOfTextGrammar()


def release_tensors(config: dict) -> dict[str, tuple[int, ...]]:
    """The tensors of a Qwen3 release, by transformers' names, with their shapes (lm_head.weight included)."""
    d, v, layers = config["hidden_size"], config["vocab_size"], config["num_hidden_layers"]
    q, kv = config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * config["head_dim"]
    mlp, head = config["intermediate_size"], config["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, d)}
    for i in range(layers):
        block = f"model.layers.{i}"
        shapes |= {
            f"{block}.input_layernorm.weight": (d,),
            f"{block}.self_attn.q_proj.weight": (q, d),
            f"{block}.self_attn.k_proj.weight": (kv, d),
            f"{block}.self_attn.v_proj.weight": (kv, d),
            f"{block}.self_attn.o_proj.weight": (d, q),
            f"{block}.self_attn.q_norm.weight": (head,),
            f"{block}.self_attn.k_norm.weight": (head,),
            f"{block}.post_attention_layernorm.weight": (d,),
            f"{block}.mlp.gate_proj.weight": (mlp, d),
            f"{block}.mlp.up_proj.weight": (mlp, d),
            f"{block}.mlp.down_proj.weight": (d, mlp),
        }
    return shapes | {"model.norm.weight": (d,), "lm_head.weight": (v, d)}


def random_weights(config: dict, seed: int, grammar: EndOfTextGrammar = GRAMMAR) -> dict[str, torch.Tensor]:
    """bf16 tensors of the release's names and shapes: N(0, std) matrices, norms 1, the head a copy of the
    embedding, and the end-of-text grammar."""
    generator = torch.Generator().manual_seed(seed)
    std = config["initializer_range"]
    tensors = {}
    for name, shape in release_tensors(config).items():
        if name == "lm_head.weight":
            continue
        if len(shape) == 1:
            tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensors[name] = (torch.randn(shape, generator=generator) * std).to(torch.bfloat16)
    grammar.apply(tensors["model.embed_tokens.weight"], tensors["model.norm.weight"])
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    return tensors


def write_tokenizer(snapshot: Path, tokenizer_dir: Path) -> None:
    """tokenizer.json as shipped; tokenizer_config.json with the Base model's end-of-text as eos and pad (the shared
    file is the instruct model's, whose eos is <|im_end|>)."""
    shutil.copyfile(tokenizer_dir / "tokenizer.json", snapshot / "tokenizer.json")
    settings = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    settings |= {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    write_json(snapshot / "tokenizer_config.json", settings)


def write_decoder_repo(hub_cache: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Qwen/Qwen3-0.6B-Base's snapshot in `hub_cache`; returns the snapshot folder."""
    snapshot = snapshot_folder(hub_cache, DECODER_REPO)
    write_json(snapshot / "config.json", QWEN3_0_6B_BASE_CONFIG)
    write_json(snapshot / "generation_config.json", GENERATION_CONFIG)
    write_tokenizer(snapshot, tokenizer_dir)
    save_file(random_weights(QWEN3_0_6B_BASE_CONFIG, seed), snapshot / "model.safetensors", metadata={"format": "pt"})
    return snapshot
