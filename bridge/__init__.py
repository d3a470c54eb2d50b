"""The bridge between a frozen vision encoder and the Qwen3 decoder, and the model that joins them.

- `adapters.py`: `PooledAdapter` (embedding -> N visual tokens) and `HiddenStateProjector` (tokens -> tokens).
- `vlm.py`: `VisionLanguageModel` (encoder + bridge + decoder, top-K freezing, loss, generation).
"""

from .adapters import HiddenStateProjector, PooledAdapter, build_bridge
from .vlm import VisionLanguageModel, VLMConfig

__all__ = ["HiddenStateProjector", "PooledAdapter", "VLMConfig", "VisionLanguageModel", "build_bridge"]
