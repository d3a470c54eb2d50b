"""Tests for `vision/`: frozen encoders (shapes, freezing, preprocessing, offline errors) and the feature cache.

Everything runs offline: "vit" and "clip" are built with random weights ("none"), and the cache tests use the
tiny encoder on a handful of small images written into tmp_path.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from data.images import decode_image
from errors import UserError
from vision import FeatureCache, MappedFeatures, VisionEncoder, build_encoder

# name -> (pooled_dim, hidden_dim, num_tokens, image_size)
EXPECTED_SIZES = {
    "tiny": (192, 192, 10, 48),
    "vit": (768, 768, 197, 224),
    "clip": (512, 768, 50, 224),
}


@pytest.fixture(scope="module")
def encoders() -> dict[str, VisionEncoder]:
    """Each encoder built once with random weights (a few seconds for the two ViT-Bs)."""
    return {name: build_encoder(name, "none") for name in EXPECTED_SIZES}


@pytest.fixture(scope="module")
def outputs(encoders: dict[str, VisionEncoder]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """name -> (pixels, pooled, hidden): one batch through each encoder, shared by the tests below."""
    result = {}
    for name, encoder in encoders.items():
        batch = 2 if name == "tiny" else 1  # ViT-B forwards on CPU are slow: batch 1
        pixels = torch.randn(
            batch, 3, encoder.image_size, encoder.image_size, generator=torch.Generator().manual_seed(0)
        )
        with torch.enable_grad():  # even where autograd is on, the frozen encoder builds no graph
            result[name] = (pixels, encoder(pixels), encoder(pixels, view="hidden"))
    return result


def _test_image(width: int = 300, height: int = 200, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Random-noise image; not square, so resizing and cropping both matter."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def _write_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"img_{i}.png"
        _test_image(40 + 3 * i, 30 + 2 * i, seed=i).save(path)
        paths.append(path)
    return paths


def _count_forward(encoder: VisionEncoder, monkeypatch: pytest.MonkeyPatch, fail_on_call: int | None = None):
    """Record the batch size of every encoder call; optionally crash on call number `fail_on_call`."""
    calls: list[int] = []
    original = encoder.forward

    def forward(pixel_values: torch.Tensor, view: str = "pooled") -> torch.Tensor:
        calls.append(pixel_values.shape[0])
        if len(calls) == fail_on_call:
            raise RuntimeError("simulated crash")
        return original(pixel_values, view)

    monkeypatch.setattr(encoder, "forward", forward)
    return calls


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_encoder_sizes_and_both_views(
    encoders: dict[str, VisionEncoder], outputs: dict[str, tuple[torch.Tensor, ...]], name: str
) -> None:
    encoder = encoders[name]
    pooled_dim, hidden_dim, num_tokens, image_size = EXPECTED_SIZES[name]
    sizes = (encoder.pooled_dim, encoder.hidden_dim, encoder.num_tokens, encoder.image_size)
    assert sizes == (pooled_dim, hidden_dim, num_tokens, image_size)
    pixels, pooled, hidden = outputs[name]
    batch = pixels.shape[0]
    assert pooled.shape == (batch, pooled_dim) and encoder.output_shape("pooled") == (pooled_dim,)
    assert hidden.shape == (batch, num_tokens, hidden_dim)
    assert encoder.output_shape("hidden") == (num_tokens, hidden_dim)
    for out in (pooled, hidden):
        assert out.grad_fn is None and not out.requires_grad
        assert torch.isfinite(out).all()
    assert encoder.device == torch.device("cpu") and encoder.dtype == torch.float32
    if name != "clip":  # timm ViTs: pooled is the CLS token, already through the final LayerNorm
        assert torch.equal(pooled, hidden[:, 0])
    with pytest.raises(UserError, match="pooled, hidden"):
        encoder(pixels, view="cls")


@pytest.mark.parametrize("name", list(EXPECTED_SIZES))
def test_encoder_stays_frozen_and_in_eval_mode(encoders: dict[str, VisionEncoder], name: str) -> None:
    encoder = encoders[name]
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not any(m.training for m in encoder.modules())

    parent = nn.ModuleDict({"encoder": encoder, "bridge": nn.Linear(encoder.pooled_dim, 8)})
    parent.train()
    assert parent["bridge"].training
    assert not any(m.training for m in encoder.modules())


def test_forward_builds_no_graph_even_if_parameters_are_unfrozen() -> None:
    """A careless `parent.requires_grad_(True)` must not make the encoder trainable: forward runs under no_grad."""
    encoder = build_encoder("tiny")
    encoder.requires_grad_(True)
    assert encoder(torch.randn(1, 3, 48, 48)).grad_fn is None


def test_clip_views_match_open_clip_forward(
    encoders: dict[str, VisionEncoder], outputs: dict[str, tuple[torch.Tensor, ...]]
) -> None:
    """The manual forward reproduces open_clip: pooled == encode_image, hidden[:, 1:] == output_tokens."""
    import open_clip  # here, not at the top: only the worker that runs these tests pays for the import

    visual = encoders["clip"].visual
    pixels, pooled, hidden = outputs["clip"]
    with torch.no_grad():
        visual.output_tokens = True
        try:
            # what CLIP.encode_image returns, and the 49 patch tokens after ln_post (no class token)
            reference_pooled, patch_tokens = visual(pixels)  # [1, 512], [1, 49, 768]
        finally:
            visual.output_tokens = False
    assert torch.allclose(pooled, reference_pooled, atol=1e-5)
    assert torch.allclose(hidden[:, 1:], patch_tokens, atol=1e-5)
    assert torch.allclose(hidden[:, 0] @ visual.proj, pooled, atol=1e-5)
    # The OpenAI weights were trained with QuickGELU, so the architecture for "none"/"openai" uses it too.
    assert isinstance(visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_preprocessing_is_the_libraries_own(encoders: dict[str, VisionEncoder]) -> None:
    import open_clip
    import timm.data

    image = _test_image()
    vit_cfg = timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg("vit_base_patch16_224").to_dict()
    )
    vit_reference = timm.data.create_transform(**vit_cfg, is_training=False)
    assert torch.equal(encoders["vit"].preprocess(image), vit_reference(image))

    tiny_cfg = {**vit_cfg, "input_size": (3, 48, 48), "crop_pct": 1.0}  # no centre crop: patches align with the image
    tiny_reference = timm.data.create_transform(**tiny_cfg, is_training=False)
    assert torch.equal(encoders["tiny"].preprocess(image), tiny_reference(image))

    clip_cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    clip_reference = open_clip.image_transform(
        224,
        is_train=False,
        mean=clip_cfg["mean"],
        std=clip_cfg["std"],
        interpolation=clip_cfg["interpolation"],
        resize_mode=clip_cfg["resize_mode"],
    )
    assert torch.equal(encoders["clip"].preprocess(image), clip_reference(image))

    # Grayscale or RGBA input still gives 3 channels at the encoder's size.
    for name, encoder in encoders.items():
        for mode in ("L", "RGBA"):
            size = EXPECTED_SIZES[name][3]
            assert encoder.preprocess(_test_image(mode=mode)).shape == (3, size, size)


@pytest.mark.parametrize("name", ["vit", "clip"])
def test_offline_pretrained_request_says_how_to_use_a_local_copy(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE and its cache folder once, at import: patch the constants too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    started = time.perf_counter()
    with pytest.raises(UserError) as info:
        build_encoder(name, "default")
    assert time.perf_counter() - started < 30
    message = str(info.value)
    assert "\n" not in message
    assert ("augreg2_in21k_ft_in1k" if name == "vit" else "'openai'") in message
    assert "--encoder-weights /path/to/file" in message and "--encoder-weights none" in message


def test_unknown_name_or_weights_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="vit, clip, tiny"):
        build_encoder("resnet")
    with pytest.raises(UserError, match="augreg_in1k"):  # lists timm's tags without building anything
        build_encoder("vit", "no-such-tag")
    with pytest.raises(UserError, match="laion2b_s34b_b79k"):
        build_encoder("clip", str(tmp_path / "missing.safetensors"))
    with pytest.raises(UserError, match="tiny"):
        build_encoder("tiny", "openai")


def test_random_weights_are_seeded_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, second = build_encoder("tiny", "none"), build_encoder("tiny", None)
    assert torch.equal(torch.rand(3), expected_next)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert first.weights == second.weights == build_encoder("tiny").weights == "none"


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    reference = build_encoder("tiny", "none")
    state = {k: v + 0.5 for k, v in reference.model.state_dict().items()}
    path = tmp_path / "tiny.safetensors"
    save_file(state, str(path))

    loaded = build_encoder("tiny", str(path))
    assert loaded.weights == str(path.resolve())
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("name", ["tiny", "clip"])
def test_unreadable_weights_file_is_a_user_error(name: str, tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"this is not a weights file")
    with pytest.raises(UserError, match="cannot load .* weights from"):
        build_encoder(name, str(path))


# ---------------------------------------------------------------- feature cache


def test_cache_miss_then_hit_matches_the_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _write_images(tmp_path, 5)
    encoder = build_encoder("tiny")
    calls = _count_forward(encoder, monkeypatch)
    cache = FeatureCache(tmp_path / "cache", shard_size=3)

    features, valid = cache.features(encoder, paths, "pooled", batch_size=2)
    assert sum(calls) == 5
    assert features.shape == (5, 192) and features.dtype == torch.float32
    assert valid.dtype == torch.bool and valid.all()
    # Same values, same order as running the encoder directly.
    pixels = torch.stack([encoder.preprocess(decode_image(p)) for p in paths])  # [5, 3, 48, 48]
    assert torch.allclose(features[:], encoder(pixels), atol=1e-5)

    calls.clear()
    again, valid_again = FeatureCache(tmp_path / "cache", shard_size=3).features(encoder, paths, "pooled")
    assert calls == []  # served from disk
    assert torch.equal(again[:], features[:]) and torch.equal(valid_again, valid)

    directory = cache.directory(encoder, paths, "pooled")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["done"] and manifest["dtype"] == "float32" and len(manifest["shards"]) == 2
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json",
        "shard_00000.safetensors",
        "shard_00001.safetensors",
    ]


def test_cache_rebuilds_when_view_weights_or_an_image_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _write_images(tmp_path, 3)
    cache = FeatureCache(tmp_path / "cache")
    encoder = build_encoder("tiny")
    calls = _count_forward(encoder, monkeypatch)
    pooled, _ = cache.features(encoder, paths, "pooled")

    calls.clear()
    hidden, _ = cache.features(encoder, paths, "hidden")
    assert sum(calls) == 3
    assert hidden.shape == (3, 10, 192) and hidden.dtype == torch.float16

    # Other weights (a local file) -> other features, computed anew.
    weights_file = tmp_path / "tiny.safetensors"
    save_file({k: v * 1.5 for k, v in encoder.model.state_dict().items()}, str(weights_file))
    other = build_encoder("tiny", str(weights_file))
    other_calls = _count_forward(other, monkeypatch)
    other_pooled, _ = cache.features(other, paths, "pooled")
    assert sum(other_calls) == 3 and not torch.allclose(other_pooled[:], pooled[:])

    # Rewrite one image: only the key changes, the other images' features stay the same.
    _test_image(50, 50, seed=99).save(paths[1])
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls.clear()
    changed, _ = cache.features(encoder, paths, "pooled")
    assert sum(calls) == 3
    assert torch.equal(changed[[0, 2]], pooled[[0, 2]]) and not torch.allclose(changed[1], pooled[1])
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 4  # pooled, hidden, other weights, image


def test_cache_resumes_an_interrupted_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _write_images(tmp_path, 5)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)  # shards [0, 2), [2, 4), [4, 5)
    encoder = build_encoder("tiny")
    calls = _count_forward(encoder, monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.features(encoder, paths, "pooled", batch_size=2)

    directory = cache.directory(encoder, paths, "pooled")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert not manifest["done"] and list(manifest["shards"]) == ["0"]
    assert not list(directory.glob("*.tmp"))  # nothing half-written left behind

    monkeypatch.undo()
    calls = _count_forward(encoder, monkeypatch)
    features, valid = cache.features(encoder, paths, "pooled", batch_size=2)
    assert calls == [2, 1]  # only shards 1 and 2 were computed
    fresh, _ = FeatureCache(tmp_path / "fresh", shard_size=2).features(encoder, paths, "pooled", batch_size=2)
    assert torch.equal(features[:], fresh[:]) and valid.all()


def test_cache_bad_images_get_zero_features_and_valid_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = _write_images(tmp_path, 4)
    encoder = build_encoder("tiny")
    clean, _ = FeatureCache(tmp_path / "clean").features(encoder, paths, "pooled")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    mixed = [paths[0], broken, paths[1], tmp_path / "missing.png", paths[2], paths[3]]
    calls = _count_forward(encoder, monkeypatch)
    cache = FeatureCache(tmp_path / "cache", shard_size=4)
    with caplog.at_level(logging.WARNING, logger="vision.cache"):
        features, valid = cache.features(encoder, mixed, "pooled", batch_size=3)
    assert valid.tolist() == [True, False, True, False, True, True]
    assert sum(calls) == 4  # the encoder never saw the bad images
    assert torch.equal(features[~valid], torch.zeros(2, 192))
    assert torch.allclose(features[valid], clean[:], atol=1e-5)
    assert "2 of 6 images could not be read" in caplog.text

    manifest = json.loads((cache.directory(encoder, mixed, "pooled") / "manifest.json").read_text())
    invalid = [entry for shard in manifest["shards"].values() for entry in shard["invalid"]]
    assert [entry["index"] for entry in invalid] == [1, 3]
    assert all(entry["reason"] for entry in invalid)


# ---------------------------------------------------------------- memory-mapped features


def test_mapped_features_equal_the_in_memory_ones(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 7)
    encoder = build_encoder("tiny")
    cache = FeatureCache(tmp_path / "cache", shard_size=3)  # shards of 3, 3 and 1 images
    in_ram, valid_in_ram = cache.features(encoder, paths, "hidden", batch_size=4, in_memory=True)
    mapped, valid = cache.features(encoder, paths, "hidden")
    assert isinstance(mapped, MappedFeatures) and isinstance(in_ram, torch.Tensor)
    assert mapped.shape == in_ram.shape == (7, 10, 192) and mapped.dtype == in_ram.dtype == torch.float16
    assert len(mapped) == 7 and torch.equal(valid, valid_in_ram)

    # Every way train.py and evaluate.py index features, and the others a tensor accepts.
    batch = torch.tensor([6, 0, 3, 3, 5])  # across all three shards, unordered, repeated
    mask = torch.tensor([True, False, False, True, True, False, True])
    for key in (
        batch,
        [2, 4],
        slice(2, 6),
        slice(None, None, 2),
        slice(-2, None),
        -1,
        4,
        np.int64(1),
        mask,
        [],
        torch.tensor(5),
    ):
        assert torch.equal(mapped[key], in_ram[key]), key
    assert torch.equal(mapped.tensor(), in_ram)
    batch_copy = mapped[batch]
    batch_copy += 1  # a new, writable tensor: the file is untouched
    assert torch.equal(mapped[batch], in_ram[batch])
    for bad in (7, -8, [0, 7], torch.tensor([[0, 1]])):
        with pytest.raises(IndexError):
            mapped[bad]


def test_mapped_cache_resumes_an_interrupted_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _write_images(tmp_path, 5)
    cache = FeatureCache(tmp_path / "cache", shard_size=2)
    encoder = build_encoder("tiny")
    _count_forward(encoder, monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.features(encoder, paths, "hidden", batch_size=2)
    monkeypatch.undo()
    calls = _count_forward(encoder, monkeypatch)
    mapped, valid = cache.features(encoder, paths, "hidden", batch_size=2)
    assert calls == [2, 1]  # only the two missing shards
    fresh, _ = FeatureCache(tmp_path / "fresh", shard_size=2).features(
        encoder, paths, "hidden", batch_size=2, in_memory=True
    )  # in RAM, built in one go with the same batches
    assert isinstance(mapped, MappedFeatures) and valid.all()
    assert torch.equal(mapped[:], fresh) and torch.equal(mapped[torch.tensor([4, 1])], fresh[[4, 1]])


def _rss_bytes(kind: str) -> int:
    """This process's resident memory of one kind, from /proc/self/status: "RssAnon" (heap, malloc'd tensors) or
    "RssFile" (pages of mapped files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {kind} in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon and RssFile from Linux's /proc")
def test_reading_a_mapped_cache_keeps_anonymous_memory_bounded(tmp_path: Path) -> None:
    # 6 shards of 256 "images" x 64 x 512 float16: 100 MB on disk, read in random batches of 32 (2 MB each).
    rows, shape, shards = 256, (64, 512), 6
    files = []
    for s in range(shards):
        files.append(tmp_path / f"shard_{s:05d}.safetensors")
        save_file({"features": torch.full((rows, *shape), float(s), dtype=torch.float16)}, str(files[-1]))
    total_bytes = rows * shards * 64 * 512 * 2
    mapped = MappedFeatures.open(files, rows, shape, torch.float16)

    anon_before, file_before, peak = _rss_bytes("RssAnon"), _rss_bytes("RssFile"), 0
    order = torch.randperm(len(mapped), generator=torch.Generator().manual_seed(0))
    for batch in order.split(32):  # one epoch
        features = mapped[batch]
        assert torch.equal(features[:, 0, 0], (batch // rows).to(torch.float16))  # each row from its own shard
        peak = max(peak, _rss_bytes("RssAnon") - anon_before)
    assert peak < total_bytes / 4, (
        f"anonymous memory grew {peak / 2**20:.0f} MB reading a {total_bytes / 2**20:.0f} MB cache"
    )
    # The measurement is of the right thing: the epoch touched every row, and those pages are the mapped files'
    # (RssFile), which the kernel can drop at any time, not the process's own memory. (Allocating a copy of the cache
    # is no control: the allocator may reuse pages that earlier tests freed, which RssAnon already counts.)
    assert _rss_bytes("RssFile") - file_before > 0.5 * total_bytes
