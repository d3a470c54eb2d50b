"""Frozen vision encoders and the on-disk cache of their features.

- `build_encoder(name, weights)` -> a frozen `VisionEncoder` ("vit", "clip" or "tiny") with two views of an
  image: "pooled" [B, pooled_dim] and "hidden" [B, num_tokens, hidden_dim] (see `vision.encoders`).
- `FeatureCache(root).features(encoder, image_paths, view)` -> (features, valid), computed once and reused
  (see `vision.cache`).
- `load_image(path)` opens an image defensively, raising `BadImageError` (see `vision.images`).
"""

from vision.cache import FeatureCache
from vision.encoders import (
    ENCODER_NAMES,
    VIEWS,
    OpenClipEncoder,
    TimmViTEncoder,
    TinyViTConfig,
    VisionEncoder,
    build_encoder,
)
from vision.images import BadImageError, load_image

__all__ = [
    "ENCODER_NAMES",
    "VIEWS",
    "BadImageError",
    "FeatureCache",
    "OpenClipEncoder",
    "TimmViTEncoder",
    "TinyViTConfig",
    "VisionEncoder",
    "build_encoder",
    "load_image",
]
