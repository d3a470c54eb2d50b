"""A hand-written Qwen3 decoder that loads the official Qwen3-0.6B-Base weights.

- `Qwen3Config`: the validated configuration (field names = `config.json` keys).
- `Qwen3ForCausalLM`: the model (`model.py`, one file to read top to bottom).
- `generate`: greedy and sampled decoding with a KV cache (`generate.py`).

Read next: `tiny_decoder/model.py`, the model in one file (the first stop of the README's reading order).
"""

from .config import Qwen3Config
from .generate import generate
from .model import KVCache, Qwen3ForCausalLM

__all__ = ["KVCache", "Qwen3Config", "Qwen3ForCausalLM", "generate"]
