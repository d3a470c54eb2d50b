"""The teacher: Qwen2.5-VL-3B-Instruct through Hugging Face transformers, answering a batch of images at once.

How transformers (5.x) turns an image and a text into the model's inputs, and what we rely on:

- `AutoProcessor` loads a `Qwen2_5_VLProcessor`: the Qwen2 tokenizer plus `Qwen2VLImageProcessor`, which resizes
  each image so both sides are multiples of 28 (14-pixel patches, merged 2 x 2) with at most `max_pixels` pixels,
  and cuts it into patches. An image of H x W pixels becomes (H/28) * (W/28) visual tokens, so bounding
  `max_pixels` bounds the sequence length (the default allows 12.8 megapixels, far too many for a batch).
- `processor.apply_chat_template(conversations, tokenize=True, return_dict=True)` renders each conversation with
  the model's chat template, which writes an image as `<|vision_start|><|image_pad|><|vision_end|>`; the
  processor then repeats `<|image_pad|>` once per visual token of that image and tokenises. It returns
  `input_ids`, `attention_mask`, `pixel_values` (all images' patches stacked, [patches, 3 * 2 * 14 * 14]),
  `image_grid_thw` ([B, 3]: the patch grid of each image) and `mm_token_type_ids` ([B, T]: which tokens are
  image tokens), all of which `generate` needs (the last two to build Qwen's 3-D rotary positions, M-RoPE).
  A list of conversations is a batch; images are given as PIL images in `{"type": "image", "image": ...}`.
- Batched generation needs left padding (`padding_side="left"`): a decoder-only model continues the *last*
  column, so every prompt must end there, with the padding before it (masked out by `attention_mask`).
- `generate` returns prompt + new tokens; we cut the prompt's width and decode without special tokens.

Reference: the transformers Qwen2.5-VL documentation,
https://huggingface.co/docs/transformers/model_doc/qwen2_5_vl, and the model card,
https://huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct.

Read next: `synth/run.py` (the loop that asks it, checks its answers and asks again).
"""

from __future__ import annotations

import torch
from PIL import Image

from errors import UserError

DEFAULT_TEACHER = "Qwen/Qwen2.5-VL-3B-Instruct"
# 448 x 448 pixels at most: 256 visual tokens, plenty for Flickr30k's ~500 x 375 photos (about 240 tokens).
MAX_PIXELS = 448 * 448
MIN_PIXELS = 56 * 56  # the image processor's own minimum: 4 visual tokens
# The retry samples (a greedy retry would repeat the same answer): mild settings that stay on topic.
RETRY_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 50}


class QwenTeacher:
    """Qwen2.5-VL loaded once (bf16 on a GPU, fp32 on CPU), answering one prompt for a batch of images."""

    def __init__(
        self,
        model: str = DEFAULT_TEACHER,
        device: str | None = None,
        max_new_tokens: int = 512,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.name = model
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # bf16 halves memory and is the dtype the model was trained in; CPUs are slow at it, so fp32 there.
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.max_new_tokens = max_new_tokens
        # Imported here: transformers takes seconds to import, and only generation needs it (not --dry-run).
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        try:
            size = {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}  # in pixels, despite the names
            self.processor = AutoProcessor.from_pretrained(model, size=size)
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model, dtype=dtype)
        except (OSError, ValueError) as err:  # not on the hub, no network, offline mode, not a model folder...
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise UserError(
                f"could not load the teacher {model!r} ({type(err).__name__}: {reason}); it is downloaded from the "
                "Hugging Face hub on first use (about 7.5 GB for the 3B model), or pass --model /path/to/a/local/copy"
            ) from err
        self.model.to(self.device).eval()

    @torch.no_grad()
    def answer(self, images: list[Image.Image], prompt: str, sample: bool = False) -> list[str]:
        """The teacher's reply to `prompt` about each image (greedy, or sampled with `RETRY_SAMPLING`)."""
        conversations = [
            [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
            for image in images
        ]
        inputs = self.processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,  # ends with "<|im_start|>assistant\n": the model speaks next
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"},
        ).to(self.device)
        sampling = RETRY_SAMPLING if sample else {"do_sample": False}
        out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **sampling)  # [B, T + new]
        new_tokens = out[:, inputs["input_ids"].shape[1] :]  # [B, new]: drop the (left-padded) prompt
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
