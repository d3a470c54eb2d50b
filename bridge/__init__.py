"""The bridge between a frozen vision encoder and the Qwen3 decoder, and the model that joins them.

- `adapters.py`: `PooledAdapter` (embedding -> N visual tokens) and `HiddenStateProjector` (tokens -> tokens).
- `vlm.py`: `VisionLanguageModel` (encoder + bridge + decoder, top-K freezing, loss, generation), and `build_vlm`,
  the one place the model is assembled.

Read next: `bridge/adapters.py`, then `bridge/vlm.py`, then `data/batches.py` (where the labels come from).
"""

from .adapters import HiddenStateProjector, PooledAdapter, build_bridge
from .vlm import VisionLanguageModel, VLMConfig, build_vlm, check_top_k

__all__ = [
    "HiddenStateProjector",
    "PooledAdapter",
    "VLMConfig",
    "VisionLanguageModel",
    "build_bridge",
    "build_vlm",
    "check_top_k",
]
