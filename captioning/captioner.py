"""The library: a trained checkpoint, restored, that turns images into text (`Captioner`), and how it chooses tokens
(`Decoding`). What the command line, the web page and a Python user call:

    from captioning import Captioner, Decoding

    captioner = Captioner("hf:OWNER/NAME", "cpu")  # or a checkpoint's .safetensors file; "auto", "cpu" or "cuda"
    captioner.run([image], None, Decoding())       # [(caption, score)] for PIL images; a question instead of None

What happens to an image (the same path as training and evaluation, so the model sees what it was trained on):

    file -- data.images.load_image --> RGB image -- encoder.preprocess --> [3, H, W] -- frozen encoder --> features
    features -- bridge --> N visual tokens; [visual tokens]["Caption:" or "Question: ... Answer:"] -> decoder -> text

The checkpoint's sidecar names the decoder, tokenizer, encoder and its weights, the view and K; the model is rebuilt
from it (`checkpoints/restore.py`); `decoder` / `encoder_weights` point at local copies of the frozen parts it names.

Decoding (how the next token is chosen; see tiny_decoder/generate.py and tiny_decoder/beam.py): greedy (the default);
beam search (`num_beams` > 1), scored by sum log-prob / length ** length_penalty; sampling (`temperature` > 0, or
`top_k` / `top_p`; `seed` makes it repeatable). Each output comes with a score: its mean log-probability per token
(including the end-of-text token) under the model, whatever chose it; for beam search, the beam's own score, which is
the same number at length_penalty 1.

Read next: `checkpoints/restore.py` (how the model is rebuilt from a checkpoint), then `captioning/files.py` (the next
file of the package; `captioning/__init__.py` has its map).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from checkpoints.store import is_hub_checkpoint, local_checkpoint
from data import CAPTION_PROMPT, encode_prompts, question_prompt
from data.batches import pack
from errors import UserError
from runtime.devices import frozen_dtype, resolve_device

# ---------------------------------------------------------------------------------------------------------------------
# Decoding options
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """How to choose tokens. Beam search when num_beams > 1; sampling when temperature > 0 (or top_k / top_p is
    set, at temperature 1 unless given); greedy otherwise."""

    max_new_tokens: int = 32
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool = True
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise UserError(f"--seed {self.seed} is invalid; expected an integer >= 0")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens {self.max_new_tokens} is invalid; expected an integer >= 1")
        if self.num_beams < 1:
            raise UserError(f"--beams {self.num_beams} is invalid; expected an integer >= 1 (1: no beam search)")
        if self.temperature is not None and self.temperature < 0:
            raise UserError(f"--temperature {self.temperature} is invalid; expected 0 (greedy) or more")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k {self.top_k} is invalid; expected an integer >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p {self.top_p} is invalid; expected a number in (0, 1]")
        if self.sampling and self.num_beams > 1:
            raise UserError("--beams and sampling (--temperature, --top-k, --top-p) exclude each other; pick one")

    @property
    def sampling(self) -> bool:
        if self.temperature == 0:
            return False  # temperature 0 is the limit of sampling: greedy
        return self.temperature is not None or self.top_k is not None or self.top_p is not None

    def describe(self) -> str:
        if self.num_beams > 1:
            stop = "early stopping" if self.early_stopping else "no early stopping"
            return f"beam search ({self.num_beams} beams, length penalty {self.length_penalty:g}, {stop})"
        if self.sampling:
            parts = [f"temperature {1.0 if self.temperature is None else self.temperature:g}"]
            parts += [f"top-k {self.top_k}"] if self.top_k else []
            parts += [f"top-p {self.top_p:g}"] if self.top_p is not None and self.top_p < 1 else []
            return f"sampling ({', '.join(parts)}, seed {self.seed})"
        return "greedy"


# ---------------------------------------------------------------------------------------------------------------------
# The captioner: a restored model and one method that turns images into text
# ---------------------------------------------------------------------------------------------------------------------


def prompt_text(question: str | None) -> str:
    """The prompt the model was trained with: "Caption:" or "Question: ... Answer:"."""
    question = (question or "").strip()
    return question_prompt(question) if question else CAPTION_PROMPT


class Captioner:
    """A trained VisionLanguageModel with its tokenizer, ready to caption PIL images."""

    def __init__(
        self,
        checkpoint: Path | str,
        device: str = "auto",
        decoder: str | None = None,
        encoder_weights: str | None = None,
    ) -> None:
        # Imported here: the vision libraries (timm, open_clip) take seconds to import, and a bad path or option
        # should fail at once.
        from checkpoints.restore import load_trained

        self.checkpoint = local_checkpoint(checkpoint)  # hf:OWNER/NAME: the downloaded copy in the hub cache
        self.name = str(checkpoint) if is_hub_checkpoint(checkpoint) else self.checkpoint.name
        self.device, self.autocast = resolve_device(device)  # bf16 autocast on a GPU, as in training; fp32 on a CPU
        self.model, self.tokenizer, self.sidecar = load_trained(
            self.checkpoint, self.device, decoder=decoder, encoder_weights=encoder_weights
        )
        self.model.merge_lora()  # LoRA adapters (if any) folded into the weights: the same captions, no extra cost
        # Then, on a GPU (bf16 autocast), the frozen weights stored in bf16 as in training: half the memory, and no
        # cast of every matrix for each generated token. Merged first, in fp32, so an adapter's update is rounded
        # once, with its weight, as autocast would round it. On a CPU: fp32, nothing changes. Whatever runs this model
        # runs it under `self.autocast` (caption.py's and the page's explanations too).
        self.model.store_frozen_in(frozen_dtype(self.device, "auto"))
        self.default_max_new_tokens = int(self.sidecar.get("train_config", {}).get("max_new_tokens", 32))
        self.lock = threading.Lock()  # one generation at a time (the web page serves several browsers)

    def summary(self) -> str:
        m = self.sidecar["model"]
        return (
            f"{self.name}: encoder {m['encoder']} ({m['view']} view), top-{m['top_k']} decoder blocks "
            f"trained, epoch {self.sidecar.get('epoch', '?')}"
        )

    @torch.no_grad()
    def run(
        self,
        images: Sequence[Image.Image],
        question: str | None,
        decoding: Decoding,
        generator: torch.Generator | None = None,
    ) -> list[tuple[str, float]]:
        """(output text, score) for each image; the same prompt for all of them."""
        model, eos = self.model, self.tokenizer.eos_id
        prompt = encode_prompts(self.tokenizer.tokenizer, [prompt_text(question)])[0]
        prompts = [prompt] * len(images)
        pixel_values = torch.stack([model.encoder.preprocess(image) for image in images])  # [B, 3, H, W]
        with self.lock, self.autocast():
            features = model.encoder(pixel_values.to(self.device), view=model.config.view)  # the frozen encoder, once
            if decoding.num_beams > 1:
                outputs, beam_scores = model.beam_search(
                    prompts, features=features, num_beams=decoding.num_beams, max_new_tokens=decoding.max_new_tokens,
                    length_penalty=decoding.length_penalty, eos_token_id=eos, early_stopping=decoding.early_stopping,
                )  # fmt: skip
                scores = beam_scores.float().tolist()
            else:
                outputs = model.generate(
                    prompts, features=features, max_new_tokens=decoding.max_new_tokens, eos_token_id=eos,
                    pad_token_id=self.tokenizer.pad_id, do_sample=decoding.sampling,
                    temperature=decoding.temperature or 1.0, top_k=decoding.top_k, top_p=decoding.top_p,
                    generator=generator,
                )  # fmt: skip
                scores = self.mean_log_prob(features, prompt, outputs, decoding.max_new_tokens)
        return [(self.tokenizer.decode(ids).strip(), score) for ids, score in zip(outputs, scores, strict=True)]

    def mean_log_prob(
        self, features: torch.Tensor, prompt: list[int], outputs: list[list[int]], max_new_tokens: int
    ) -> list[float]:
        """Mean log-probability per generated token (the end-of-text included when it was generated), one forward
        pass over [visual][prompt][output] with teacher forcing."""
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        # An output shorter than max_new_tokens was cut at its end-of-text token, which the model chose too.
        targets = [ids + [eos] if len(ids) < max_new_tokens else ids for ids in outputs]
        batch = pack([prompt] * len(targets), targets, pad)  # the training batches' layout (data/batches.py)
        scores = self.model.sequence_log_likelihood(
            batch["input_ids"].to(self.device), batch["labels"].to(self.device), features=features
        )
        return scores.float().tolist()


def make_generator(decoding: Decoding, device: torch.device) -> torch.Generator | None:
    """A seeded generator for sampling (None otherwise): the same seed gives the same outputs."""
    return torch.Generator(device=device).manual_seed(decoding.seed) if decoding.sampling else None
