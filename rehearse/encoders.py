"""The frozen encoders' hub repos, where timm and open_clip look for them, with random weights.

`vision/encoders.py` asks the libraries for their pretrained weights by tag, and each fetches one file from the
Hugging Face hub (or, with `HF_HUB_OFFLINE=1`, from its cache):

- "vit": `timm.create_model("vit_base_patch16_224.augreg2_in21k_ft_in1k", pretrained=True)` reads
  `model.safetensors` of the repo `timm/vit_base_patch16_224.augreg2_in21k_ft_in1k` (its pretrained config's
  `hf_hub_id`). The snapshot here is what timm itself writes for the hub (`timm.models.save_for_hf`): `config.json`
  and `model.safetensors` with the ImageNet head, which the project drops (`num_classes=0`).
- "clip": open_clip's `ViT-B-32` tag `openai` names `hf_hub: timm/vit_base_patch32_clip_224.openai/`, and open_clip
  asks for `open_clip_pytorch_model.bin`, first trying its safetensors twin `open_clip_model.safetensors`
  (`open_clip.pretrained.download_pretrained_from_hf`). The snapshot holds that file (the whole CLIP, image and
  text towers, QuickGELU as the tag says) and `open_clip_config.json`.

Both are the architectures' own random initialisations from a fixed seed: the libraries build the same modules as
for the real weights, so every key and shape is checked on load as it would be with the release.

Read next: `rehearse/teacher.py` (the synthetic-data teacher's snapshot).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .hub_cache import snapshot_folder, write_json

VIT_TAG = "vit_base_patch16_224.augreg2_in21k_ft_in1k"
VIT_REPO = f"timm/{VIT_TAG}"
CLIP_ARCH, CLIP_TAG = "ViT-B-32", "openai"
CLIP_REPO = "timm/vit_base_patch32_clip_224.openai"
CLIP_WEIGHTS = "open_clip_model.safetensors"


def write_vit_repo(hub_cache: Path, seed: int = 0) -> Path:
    """timm's ViT-B/16 (augreg2_in21k_ft_in1k) snapshot, as timm saves a model for the hub."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(VIT_TAG, pretrained=False)  # the tag's pretrained config, random weights
    snapshot = snapshot_folder(hub_cache, VIT_REPO)
    save_for_hf(model, str(snapshot), safe_serialization=True)  # config.json + model.safetensors
    return snapshot


def write_clip_repo(hub_cache: Path, seed: int = 0) -> Path:
    """open_clip's ViT-B-32 'openai' snapshot: open_clip_model.safetensors and open_clip_config.json."""
    import open_clip

    torch.manual_seed(seed)
    pretrained = open_clip.get_pretrained_cfg(CLIP_ARCH, CLIP_TAG)
    model = open_clip.create_model(CLIP_ARCH, pretrained=None, force_quick_gelu=pretrained["quick_gelu"])
    snapshot = snapshot_folder(hub_cache, CLIP_REPO)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, snapshot / CLIP_WEIGHTS, metadata={"format": "pt"})
    preprocess = {key: pretrained[key] for key in ("mean", "std", "interpolation", "resize_mode")}
    model_cfg = open_clip.get_model_config(CLIP_ARCH) | {"quick_gelu": True}
    write_json(snapshot / "open_clip_config.json", {"model_cfg": model_cfg, "preprocess_cfg": preprocess})
    return snapshot
