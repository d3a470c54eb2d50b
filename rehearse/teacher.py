"""`Qwen/Qwen2.5-VL-3B-Instruct`, the synthetic-data teacher (`python -m synth`), at its real widths and a few layers.

The teacher's weights (7.5 GB) are not here, so the rehearsal builds its layout from the release's public files and
fills it with random weights. What is real and what is reduced:

- `config.json`: the release's values (`TEACHER_CONFIG`), the text model's widths (2048, SwiGLU 11008), heads (16
  query, 2 key/value), vocabulary (151,936), M-RoPE sections (16, 24, 24) and RoPE base, and the vision tower's
  widths (1280, SwiGLU 3420, 16 heads, merged to 2048), patches (14 pixels, 2 frames, 2 x 2 merged) and window
  (112 pixels). Reduced: 2 of the 36 text blocks and 4 of the 32 vision blocks, with full attention in the last
  of them (the release has it in every 8th block, 7, 15, 23, 31; the other blocks attend within windows).
- `preprocessor_config.json`: the release's image processor settings, unchanged (`PREPROCESSOR_CONFIG`: 3,136 to
  12,845,056 pixels, CLIP's mean and std); `python -m synth` narrows the pixels with `--max-pixels`, as in a real run.
- `chat_template.json`: the release's chat template (with the default system message), unchanged.
- `generation_config.json`: the release's (its repetition penalty 1.05 applies to the teacher's greedy answers).
- `tokenizer.json`: Qwen3's (`../shared/qwen3-tokenizer`): the same byte-level BPE and the same special-token ids
  151643-151664 as Qwen2.5's, plus Qwen3's four additions after them; `tokenizer_config.json` the instruct one
  (eos `<|im_end|>`, padding `<|endoftext|>`), without Qwen3's chat template. (The release also ships
  `vocab.json` and `merges.txt`, which the fast tokenizer does not need.)
- Weights: two shards and their index under the release's names (`model-0000N-of-00002.safetensors`,
  `model.safetensors.index.json`) and the release's tensor names (`model.layers.*`, `visual.*`), which
  transformers renames on load as it does for the release; bf16, N(0, 0.02), norms 1, biases 0. The head is tied to
  the embedding (`tie_word_embeddings`), so it is not stored.

Sources: https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct, its config.json (as dumped in public model notes),
preprocessor_config.json and chat_template.json (as quoted in public code, the same for the 7B model);
generation_config.json as derivatives of Qwen2.5-VL carry it (not checked against this repo's own file).

Read next: `rehearse/flickr.py` (the images and captions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .hub_cache import snapshot_folder, write_json

TEACHER_REPO = "Qwen/Qwen2.5-VL-3B-Instruct"
TEXT_BLOCKS, VISION_BLOCKS = 2, 4  # of the release's 36 and 32

TEACHER_CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 16,
    "num_hidden_layers": TEXT_BLOCKS,  # the release: 36
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": VISION_BLOCKS,  # the release: 32
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [VISION_BLOCKS - 1],  # the release: [7, 15, 23, 31]
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.1,
    "top_p": 0.001,
    "top_k": 1,
    "transformers_version": "4.37.0",
}
# transformers 5 names the tensors model.language_model.* and model.visual.*; the release (and so the files here)
# model.* and visual.*, which transformers renames when it loads them.
RELEASE_NAMES = (("model.language_model.", "model."), ("model.visual.", "visual."))


def release_name(name: str) -> str:
    for ours, theirs in RELEASE_NAMES:
        if name.startswith(ours):
            return theirs + name.removeprefix(ours)
    return name


def teacher_shapes() -> dict[str, tuple[int, ...]]:
    """The reduced teacher's tensors by the release's names, from transformers' model built on the meta device."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**TEACHER_CONFIG))
    tied = {"lm_head.weight"} if TEACHER_CONFIG["tie_word_embeddings"] else set()
    return {release_name(n): tuple(t.shape) for n, t in model.state_dict().items() if n not in tied}


def random_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Norm gains 1, biases 0, everything else N(0, 0.02); bf16 as released."""
    if name.endswith(".bias"):
        value = torch.zeros(shape)
    elif len(shape) == 1:  # the gains of RMSNorm
        value = torch.ones(shape)
    else:
        value = torch.randn(shape, generator=generator) * TEACHER_CONFIG["initializer_range"]
    return value.to(torch.bfloat16)


def write_weights(snapshot: Path, seed: int) -> None:
    """Two shards (the embedding in the first, everything else in the second) and their index."""
    generator = torch.Generator().manual_seed(seed)
    shards: list[dict[str, torch.Tensor]] = [{}, {}]
    for name, shape in teacher_shapes().items():
        shards[0 if name == "model.embed_tokens.weight" else 1][name] = random_tensor(name, shape, generator)
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, snapshot / file, metadata={"format": "pt"})
        weight_map |= {name: file for name in tensors}
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    write_json(snapshot / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_teacher_repo(hub_cache: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Qwen/Qwen2.5-VL-3B-Instruct's snapshot (reduced depth) in `hub_cache`; returns the snapshot folder."""
    snapshot = snapshot_folder(hub_cache, TEACHER_REPO)
    write_json(snapshot / "config.json", TEACHER_CONFIG)
    write_json(snapshot / "generation_config.json", GENERATION_CONFIG)
    write_json(snapshot / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    write_json(snapshot / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    shutil.copyfile(tokenizer_dir / "tokenizer.json", snapshot / "tokenizer.json")
    settings = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)  # Qwen3's; the processor's template is chat_template.json
    write_json(snapshot / "tokenizer_config.json", settings)
    write_weights(snapshot, seed)
    return snapshot
