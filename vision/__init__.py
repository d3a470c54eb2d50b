"""Frozen vision encoders and the on-disk cache of their features.

- `build_encoder(name, weights)` -> a frozen `VisionEncoder` ("vit", "clip" or "tiny") with two views of an
  image: "pooled" [B, pooled_dim] and "hidden" [B, num_tokens, hidden_dim] (see `vision.encoders`).
- `FeatureCache(root).features(encoder, image_paths, view)` -> (features, valid), computed once and reused
  (see `vision.cache`); the features are a `MappedFeatures`, read from disk pages a batch at a time
  (see `vision.mapped`).

Read next: `vision/encoders.py`, then `vision/cache.py`.
"""

from vision.cache import FeatureCache
from vision.encoders import (
    ENCODER_NAMES,
    VIEWS,
    ClipText,
    OpenClipEncoder,
    TimmViTEncoder,
    TinyViTConfig,
    VisionEncoder,
    build_clip_text,
    build_encoder,
)
from vision.mapped import MappedFeatures

__all__ = [
    "ENCODER_NAMES",
    "VIEWS",
    "ClipText",
    "FeatureCache",
    "MappedFeatures",
    "OpenClipEncoder",
    "TimmViTEncoder",
    "TinyViTConfig",
    "VisionEncoder",
    "build_clip_text",
    "build_encoder",
]
