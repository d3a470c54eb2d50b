"""Frozen vision encoders: turn an image into the features the bridge learns to translate.

The model never trains these networks. A pretrained vision transformer already knows how to describe an
image; we only read its features out and let a small bridge map them into the language model's space
(the LLaVA recipe: Liu et al. 2023, "Visual Instruction Tuning", https://arxiv.org/abs/2304.08485).

Three encoders are available through `build_encoder(name, weights)`:

- "vit": `vit_base_patch16_224` from timm (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words",
  https://arxiv.org/abs/2010.11929). A 224x224 image is cut into 14x14 = 196 patches of 16x16 pixels, plus one
  class (CLS) token: 197 tokens of width 768. It was trained to classify ImageNet images.
- "clip": the image tower of OpenAI's CLIP ViT-B/32 from open_clip (Radford et al. 2021, "Learning Transferable
  Visual Models From Natural Language Supervision", https://arxiv.org/abs/2103.00020). 7x7 = 49 patches of
  32x32 pixels plus a class token: 50 tokens of width 768, and a 512-d image embedding that was trained to
  match the embedding of the image's caption -- features that already "speak" about language.
- "tiny": a 1-layer, 192-wide timm ViT on 48x48 images (3x3 patches of 16x16 + CLS = 10 tokens), randomly initialised
  with a fixed seed. It exists for fast tests and the offline demo; its features mean nothing.

Each encoder offers two *views* of an image:

- "pooled": one vector per image, [B, pooled_dim] -- the summary the model was trained to produce.
- "hidden": every token of the last layer, [B, num_tokens, hidden_dim] -- a spatial map the bridge can pool
  or attend over (more detail, more memory).

"Frozen" is enforced three ways: every parameter has `requires_grad=False`; `train()` is overridden so the
encoder stays in eval mode even when a parent module is put in training mode (dropout, drop-path and
similar layers must behave deterministically, or cached features would not match fresh ones); and
`forward` runs under `torch.no_grad()`, so no autograd graph is built (we use no_grad rather than
`inference_mode` because the outputs feed a trainable bridge, and inference tensors cannot be saved for
backward).

Image preprocessing (resize, crop, normalise) is part of what a pretrained model expects. We never copy its
constants by hand: timm's transform comes from the model's data config (`resolve_data_config` +
`create_transform`, https://huggingface.co/docs/timm/quickstart) and open_clip's from
`create_model_and_transforms` (https://github.com/mlfoundations/open_clip).

Pretrained weights are downloaded from the Hugging Face hub by timm / open_clip. Where the hub cannot be
reached, `build_encoder` raises a `UserError` that says which file is missing and how to pass a local copy.

Read next: `vision/cache.py` (the encoder runs once per image), `bridge/adapters.py` (what reads its output).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub.errors
import torch
from PIL import Image
from torch import nn

from errors import UserError

if TYPE_CHECKING:  # open_clip is imported where CLIP is built: it pulls in transformers (~1.5 s) that "vit" never needs
    import open_clip
    import timm  # imported where a ViT is built (`_timm`)

ENCODER_NAMES = ("vit", "clip", "tiny")
VIEWS = ("pooled", "hidden")

VIT_ARCH = "vit_base_patch16_224"  # timm architecture behind "vit"
CLIP_ARCH = "ViT-B-32"  # open_clip architecture behind "clip"
CLIP_DEFAULT_TAG = "openai"  # the weights "default" means for "clip"
RANDOM_INIT_SEED = 0  # "none" means random weights drawn with this seed, so they are the same every run


def _timm():
    """timm, imported where a ViT is built or its tags are checked: it imports torchvision (~2.5 s on a small CPU),
    which a command that fails on a bad flag never needs."""
    import timm
    import timm.data
    import timm.models

    return timm


# Raised (directly or as the cause of another error) when weights cannot be fetched from the hub.
_DOWNLOAD_ERRORS = (
    huggingface_hub.errors.LocalEntryNotFoundError,  # offline or unreachable, and not in the local cache
    huggingface_hub.errors.OfflineModeIsEnabled,
    huggingface_hub.errors.HfHubHTTPError,  # e.g. repository not found, gated repository
    urllib.error.URLError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class TinyViTConfig:
    """Shape of the "tiny" encoder: a real timm VisionTransformer, just very small."""

    # 48x48 pixels in 16x16 patches: a 3x3 grid, the grid the shapes set draws its shapes on, so each patch token
    # sees one cell. 192 random features per 768-pixel patch keep most of what is in it; one random block and the
    # final norm blur it little. The demo's bridge reads these 9 patch tokens (+ CLS).
    img_size: int = 48
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 1
    num_heads: int = 3
    seed: int = RANDOM_INIT_SEED


TINY_CONFIG = TinyViTConfig()


class RGBPreprocess:
    """Convert any PIL image to RGB, then apply the library's own eval transform -> FloatTensor [3, H, W].

    Grayscale, palette or RGBA images would otherwise give 1 or 4 channels. open_clip's transform already
    converts to RGB; doing it again is a no-op. A class (not a lambda) so DataLoader workers can pickle it.
    """

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert("RGB"))

    def __repr__(self) -> str:
        return f"RGBPreprocess({self.transform})"


class VisionEncoder(nn.Module):
    """A frozen image encoder with two views: "pooled" [B, pooled_dim] and "hidden" [B, num_tokens, hidden_dim].

    Subclasses implement `hidden_states` (all last-layer tokens) and `pool` (the pooled vector, computed from
    those tokens), so one network pass serves both views.

    Attributes:
        name: "vit", "clip" or "tiny".
        weights: what the weights are: a pretrained tag (e.g. "augreg2_in21k_ft_in1k", "openai"), the resolved
            path of a local weights file, or "none" (random init with a fixed seed).
        pooled_dim, hidden_dim, num_tokens, image_size: the output and input sizes.
        preprocess: PIL.Image -> FloatTensor [3, image_size, image_size], the model's own eval transform.
    """

    def __init__(
        self,
        *,
        name: str,
        weights: str,
        preprocess: Callable[[Image.Image], torch.Tensor],
        image_size: int,
        pooled_dim: int,
        hidden_dim: int,
        num_tokens: int,
    ) -> None:
        super().__init__()
        self.name = name
        self.weights = weights
        self.preprocess = preprocess
        self.image_size = image_size
        self.pooled_dim = pooled_dim
        self.hidden_dim = hidden_dim
        self.num_tokens = num_tokens

    def _freeze(self) -> None:
        """Call at the end of a subclass __init__, once the network is attached."""
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VisionEncoder:
        """Ignore `mode`: a frozen encoder is always in eval mode, even when a parent calls `.train()`."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def output_shape(self, view: str) -> tuple[int, ...]:
        """Shape of one image's features in `view` (without the batch dimension)."""
        check_view(view)
        return (self.pooled_dim,) if view == "pooled" else (self.num_tokens, self.hidden_dim)

    def hidden_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, num_tokens, hidden_dim], every token of the last layer after its final norm."""
        raise NotImplementedError

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, num_tokens, hidden_dim] -> [B, pooled_dim]."""
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor, view: str = "pooled") -> torch.Tensor:
        """Encode a batch of preprocessed images [B, 3, H, W] (moved to the encoder's device and dtype)."""
        check_view(view)
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            hidden = self.hidden_states(pixel_values)  # [B, num_tokens, hidden_dim]
            return hidden if view == "hidden" else self.pool(hidden)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights={self.weights!r}"


class TimmViTEncoder(VisionEncoder):
    """A timm VisionTransformer ("vit" and "tiny"): pooled = the CLS token after the final LayerNorm."""

    def __init__(
        self,
        model: timm.models.VisionTransformer,
        *,
        name: str,
        weights: str,
        preprocess: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        if model.global_pool != "token":
            raise ValueError(f"expected a CLS-token pooled ViT, got global_pool={model.global_pool!r}")
        grid_h, grid_w = model.patch_embed.grid_size
        super().__init__(
            name=name,
            weights=weights,
            preprocess=preprocess,
            image_size=model.patch_embed.img_size[0],
            pooled_dim=model.num_features,
            hidden_dim=model.embed_dim,
            num_tokens=model.num_prefix_tokens + grid_h * grid_w,
        )
        self.model = model
        self._freeze()

    def hidden_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # patch embedding + CLS + position embeddings -> blocks -> final norm: [B, 1 + grid_h * grid_w, D]
        return self.model.forward_features(pixel_values)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        # For a global_pool="token" ViT this takes hidden[:, 0] (the CLS token, already normalised);
        # pre_logits=True stops before the (removed) classifier head. [B, T, D] -> [B, D]
        return self.model.forward_head(hidden, pre_logits=True)


class OpenClipEncoder(VisionEncoder):
    """The image tower of an open_clip CLIP ViT ("clip").

    pooled: the image embedding exactly as `CLIP.encode_image` returns it (class token after `ln_post`,
    times the projection `proj`: 768 -> 512), *not* L2-normalised. CLIP compares embeddings by cosine
    similarity, so it normalises them for the contrastive loss; for a bridge the norm is extra information and
    LayerNorm/Linear layers downstream handle the scale. Call `F.normalize(x, dim=-1)` if you want the unit
    vector CLIP uses for retrieval.

    hidden: all 50 tokens (class + 49 patches) after `ln_post`, before the projection. open_clip's
    `output_tokens=True` returns only the 49 patch tokens, so `hidden_states` runs the tower's parts by hand,
    exactly as `VisionTransformer.forward` does (the tests check both against open_clip's own forward).
    """

    def __init__(
        self,
        visual: open_clip.transformer.VisionTransformer,
        *,
        name: str,
        weights: str,
        preprocess: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        # The manual forward below is the plain CLIP recipe; refuse towers that pool differently.
        if visual.attn_pool is not None or visual.pool_type != "tok" or visual.final_ln_after_pool:
            raise ValueError("expected a CLIP ViT with class-token pooling and ln_post before pooling")
        grid_h, grid_w = visual.grid_size
        super().__init__(
            name=name,
            weights=weights,
            preprocess=preprocess,
            image_size=visual.image_size[0],
            pooled_dim=visual.output_dim,
            hidden_dim=visual.conv1.out_channels,
            num_tokens=1 + grid_h * grid_w,
        )
        self.visual = visual
        self._freeze()

    def hidden_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        v = self.visual
        x = v.conv1(pixel_values)  # [B, D, grid_h, grid_w]: one D-vector per 32x32 patch
        x = x.flatten(2)  # [B, D, grid_h * grid_w]
        x = x.permute(0, 2, 1)  # [B, P, D] with P = grid_h * grid_w patch tokens
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [D] -> [B, 1, D]
        x = torch.cat([cls, x], dim=1)  # [B, 1 + P, D]
        x = x + v.positional_embedding.to(x.dtype)  # [1 + P, D] broadcast over the batch
        x = v.patch_dropout(x)  # identity in eval mode
        x = v.ln_pre(x)
        x = v.transformer(x)  # [B, 1 + P, D]
        return v.ln_post(x)

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0] @ self.visual.proj  # [B, D] @ [D, E] -> [B, E]


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise UserError(f"unknown feature view {view!r}; expected one of {', '.join(VIEWS)}")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Draw random initial weights from a fixed seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _download_error(exc: BaseException) -> BaseException | None:
    """The exception in `exc`'s chain (itself or what it was raised from) saying the hub was unreachable."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _DOWNLOAD_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _offline_error(
    model: str, tag: str, hub_repo: str, filename: str, is_default: bool, cause: BaseException
) -> UserError:
    """One line: what could not be fetched, and how to get going without the hub."""
    problem = (
        f"cannot fetch pretrained weights {tag!r} for {model} from the Hugging Face hub "
        f"(offline or unreachable: {type(cause).__name__}) and no cached copy exists"
    )
    if is_default:
        # A local file is loaded as the default weights (architecture and preprocessing), so offer it here.
        advice = (
            f"download https://huggingface.co/{hub_repo}/resolve/main/{filename} where there is network and "
            f"pass it with --encoder-weights /path/to/file, or use --encoder-weights none for random weights"
        )
    else:
        advice = (
            f"run `hf download {hub_repo}` where there is network and copy the Hugging Face cache (HF_HOME) "
            f"here, or use --encoder-weights /path/to/file for a local copy of the default weights, "
            f"or --encoder-weights none for random weights"
        )
    return UserError(f"{problem}: {advice}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _local_file(weights: str) -> Path | None:
    """`weights` as a local file path, or None when it is not a path to an existing file."""
    path = Path(weights).expanduser()
    return path.resolve() if path.is_file() else None


def _timm_preprocess(
    model: nn.Module, input_size: tuple[int, int, int] | None = None, crop_pct: float | None = None
) -> RGBPreprocess:
    """timm's eval transform for `model`, from its pretrained config (optionally at another input size / crop)."""
    timm = _timm()
    args = {"input_size": input_size} if input_size is not None else {}
    if crop_pct is not None:
        args["crop_pct"] = crop_pct
    data_config = timm.data.resolve_data_config(args, model=model)
    return RGBPreprocess(timm.data.create_transform(**data_config, is_training=False))


def _load_timm_file(model: nn.Module, path: Path, what: str) -> None:
    """Load a local weights file into a timm ViT, strictly (every weight must be there)."""
    timm = _timm()
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = timm.models.load_state_dict(str(path))  # .safetensors, or torch.load(weights_only=True)
        # The classifier head is not used (features stop before it), so drop it whatever its size.
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        # timm's own converter: original Google/JAX/CLIP layouts, position embeddings at another size.
        state = checkpoint_filter_fn(state, model)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # anything wrong here is about the user's file
        raise UserError(f"cannot load {what} weights from {path}: {_first_line(exc)}") from exc


def _vit_tags() -> tuple[str, list[str]]:
    """timm's default pretrained tag of the ViT, and all its tags."""
    timm = _timm()
    default_tag = timm.models.get_pretrained_cfg(VIT_ARCH).tag
    return default_tag, [name.split(".", 1)[1] for name in timm.list_pretrained(f"{VIT_ARCH}.*")]


def _clip_tags() -> list[str]:
    import open_clip

    return open_clip.list_pretrained_tags_by_model(CLIP_ARCH)


def _unknown_weights(name: str, weights: str) -> UserError:
    """The one-line error for a `weights` value that is no form `build_encoder(name, ...)` accepts."""
    if name == "vit":
        default_tag, tags = _vit_tags()
        return UserError(
            f"unknown weights {weights!r} for vit (timm {VIT_ARCH}): expected 'default' ({default_tag}), 'none', "
            f"an existing weights file, or one of the timm tags {', '.join(tags)}"
        )
    if name == "clip":
        return UserError(
            f"unknown weights {weights!r} for clip (open_clip {CLIP_ARCH}): expected 'default' ({CLIP_DEFAULT_TAG}), "
            f"'none', an existing weights file, or one of the open_clip tags {', '.join(_clip_tags())}"
        )
    return UserError(
        f"unknown weights {weights!r} for tiny: expected 'default' or 'none' (seeded random init) "
        f"or an existing weights file saved from a tiny encoder (its `.model.state_dict()`)"
    )


def check_weights(name: str, weights: str | None) -> None:
    """Fail at once, downloading and loading nothing, when `build_encoder(name, weights)` could not accept the form
    of `weights`: 'default', 'none', a pretrained tag of that model, or an existing local file. Whether a tag's file
    can be fetched, and whether a local file holds the right weights, is found out when the encoder is built."""
    if name not in ENCODER_NAMES:
        raise UserError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODER_NAMES)}")
    weights = "none" if weights is None else weights
    if weights in ("default", "none") or _local_file(weights) is not None:
        return
    if (name == "vit" and weights in _vit_tags()[1]) or (name == "clip" and weights in _clip_tags()):
        return
    raise _unknown_weights(name, weights)


def _build_vit(weights: str) -> VisionEncoder:
    timm = _timm()
    default_tag, tags = _vit_tags()
    tag = default_tag if weights == "default" else weights
    what = f"vit (timm {VIT_ARCH})"

    if tag == "none":
        with _seeded(RANDOM_INIT_SEED):
            model = timm.create_model(VIT_ARCH, pretrained=False, num_classes=0)
    elif tag in tags:
        try:
            # num_classes=0 drops the ImageNet classifier; timm then loads all other weights.
            model = timm.create_model(f"{VIT_ARCH}.{tag}", pretrained=True, num_classes=0)
        except Exception as exc:
            if (cause := _download_error(exc)) is not None:
                repo = f"timm/{VIT_ARCH}.{tag}"
                is_default = tag == default_tag
                raise _offline_error(what, tag, repo, timm.models._hub.HF_SAFE_WEIGHTS_NAME, is_default, cause) from exc
            raise
    elif (path := _local_file(tag)) is not None:
        with _seeded(RANDOM_INIT_SEED):
            model = timm.create_model(VIT_ARCH, pretrained=False, num_classes=0)
        _load_timm_file(model, path, what)
        tag = str(path)
    else:
        raise _unknown_weights("vit", weights)
    return TimmViTEncoder(model, name="vit", weights=tag, preprocess=_timm_preprocess(model))


def _build_tiny(weights: str, config: TinyViTConfig = TINY_CONFIG) -> VisionEncoder:
    # vit_base_patch16_224 with smaller sizes: same code, and the same preprocessing config (normalisation,
    # interpolation) as "vit", at 48x48 and without the centre crop.
    timm = _timm()
    with _seeded(config.seed):
        model = timm.create_model(
            VIT_ARCH,
            pretrained=False,
            num_classes=0,
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
        )
    tag = "none"  # "tiny" has no published weights: "default" and "none" both mean the seeded random init
    if weights not in ("default", "none"):
        path = _local_file(weights)
        if path is None:
            raise _unknown_weights("tiny", weights)
        _load_timm_file(model, path, "tiny")
        tag = str(path)
    # No centre crop (crop_pct 1): the whole image is resized to the input size, so patches stay aligned with it.
    preprocess = _timm_preprocess(model, input_size=(3, config.img_size, config.img_size), crop_pct=1.0)
    return TimmViTEncoder(model, name="tiny", weights=tag, preprocess=preprocess)


def _create_clip(weights: str) -> tuple[nn.Module, str, Callable]:
    """The whole open_clip model (image and text towers), its weights tag and its eval preprocessing."""
    import open_clip

    tags = _clip_tags()
    tag = CLIP_DEFAULT_TAG if weights == "default" else weights
    what = f"clip (open_clip {CLIP_ARCH})"

    # The config of the pretrained tag decides the activation (QuickGELU or not) and the preprocessing.
    # Random weights and local files use the default tag's config: a local file is most likely a copy of
    # the default ("openai") weights.
    tag_cfg = open_clip.get_pretrained_cfg(CLIP_ARCH, tag) if tag in tags else None
    if tag_cfg is not None:
        pretrained = tag
    elif tag == "none":
        pretrained = None
    elif (path := _local_file(tag)) is not None:
        pretrained = tag = str(path)
    else:
        raise _unknown_weights("clip", weights)
    arch_cfg = tag_cfg if tag_cfg is not None else open_clip.get_pretrained_cfg(CLIP_ARCH, CLIP_DEFAULT_TAG)
    # A pretrained tag brings its own preprocessing config into open_clip; otherwise pass the default tag's.
    preprocess_kwargs = (
        {}
        if tag_cfg is not None
        else dict(
            image_mean=arch_cfg["mean"],
            image_std=arch_cfg["std"],
            image_interpolation=arch_cfg["interpolation"],
            image_resize_mode=arch_cfg["resize_mode"],
        )
    )
    try:
        with _seeded(RANDOM_INIT_SEED):
            model, _, preprocess_val = open_clip.create_model_and_transforms(
                CLIP_ARCH,
                pretrained=pretrained,
                # Weights trained with QuickGELU (x * sigmoid(1.702 x)) need the same activation.
                force_quick_gelu=bool(arch_cfg.get("quick_gelu", False)),
                **preprocess_kwargs,
            )
    except Exception as exc:
        if tag_cfg is not None and (cause := _download_error(exc)) is not None:
            # hf_hub is "org/repo/" (the default file name) or "org/repo/file.bin"
            org, repo, filename = tag_cfg["hf_hub"].split("/", 2)
            filename = filename or open_clip.constants.HF_SAFE_WEIGHTS_NAME
            is_default = tag == CLIP_DEFAULT_TAG
            raise _offline_error(what, tag, f"{org}/{repo}", filename, is_default, cause) from exc
        if tag_cfg is None and pretrained is not None:  # a local file that open_clip could not load
            raise UserError(f"cannot load {what} weights from {pretrained}: {_first_line(exc)}") from exc
        raise
    return model, tag, preprocess_val


def _build_clip(weights: str) -> VisionEncoder:
    model, tag, preprocess_val = _create_clip(weights)
    # Keep only the image tower; the text tower (and its memory) is dropped with `model`.
    return OpenClipEncoder(model.visual, name="clip", weights=tag, preprocess=RGBPreprocess(preprocess_val))


class ClipText(nn.Module):
    """CLIP's text tower, for CLIP's own zero-shot retrieval: the reference row beside our model's retrieval.

    CLIP scores an (image, text) pair by the cosine similarity of their embeddings (Radford et al. 2021, section 3.1):
    both are L2-normalised and compared by a dot product. The learned temperature `logit_scale` only sharpens a
    softmax over those similarities; ranking (and so Recall@K) does not depend on it.
    """

    def __init__(self, model: nn.Module, tag: str) -> None:
        super().__init__()
        import open_clip

        self.model = model.eval().requires_grad_(False)
        self.tokenize = open_clip.get_tokenizer(CLIP_ARCH)
        self.weights = tag

    def train(self, mode: bool = True) -> ClipText:
        return super().train(False)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings [n, 512]."""
        device = next(self.model.parameters()).device
        chunks = [
            self.model.encode_text(self.tokenize(texts[i : i + batch_size]).to(device))
            for i in range(0, len(texts), batch_size)
        ]
        return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1)


def build_clip_text(weights: str | None = "default") -> ClipText:
    """CLIP ViT-B/32's text tower with the same weights as `build_encoder("clip", weights)`."""
    model, tag, _ = _create_clip(weights or "default")
    return ClipText(model, tag)


def build_encoder(name: str, weights: str | None = "default") -> VisionEncoder:
    """Build a frozen encoder.

    Args:
        name: "vit" (timm vit_base_patch16_224), "clip" (open_clip ViT-B-32 image tower) or "tiny".
        weights: one of
            - "default": vit: timm's default tag (augreg2_in21k_ft_in1k), clip: "openai", tiny: seeded random;
            - any pretrained tag of that model (fetched from the Hugging Face hub, or its local cache);
            - a path to a local weights file (.safetensors, or a torch checkpoint read with weights_only=True).
              It is loaded as a copy of the *default* weights: same architecture (for clip: QuickGELU) and
              same preprocessing. For another tag offline, fill the Hugging Face cache instead;
            - "none" or None: random weights drawn with a fixed seed (no download; identical every run, so
              their cached features stay valid).

    Raises:
        UserError: unknown name or weights, an unreadable weights file, or weights that cannot be fetched
            because the Hugging Face hub is unreachable (set HF_HUB_OFFLINE=1 to fail at once instead of
            retrying; files already in the Hugging Face cache still load in offline mode).
    """
    weights = "none" if weights is None else weights
    if name == "vit":
        return _build_vit(weights)
    if name == "clip":
        return _build_clip(weights)
    if name == "tiny":
        return _build_tiny(weights)
    raise UserError(f"unknown encoder {name!r}; expected one of {', '.join(ENCODER_NAMES)}")
