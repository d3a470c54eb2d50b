"""Caption images, or answer a question about them, with a trained checkpoint; or serve a local web page that does.

    python caption.py photo.jpg                                   # a caption, from the newest checkpoint
    python caption.py photos/ --question "what colour is the car?"  # every image under photos/, one answer each
    python caption.py a.png b.png --beams 4 --out results.jsonl    # beam search; one JSON object per image
    python caption.py a.png --temperature 0.8 --top-p 0.9 --seed 1 # sampling
    python caption.py --serve                                      # the web page, on http://127.0.0.1:7860

What happens to an image (the same path as training and evaluation, so the model sees what it was trained on):

    file -- data.images.load_image --> RGB image -- encoder.preprocess --> [3, H, W] -- frozen encoder --> features
    features -- bridge --> N visual tokens; [visual tokens]["Caption:" or "Question: ... Answer:"] -> decoder -> text

The checkpoint's sidecar names the decoder, tokenizer, encoder and its weights, the view and K; the model is rebuilt
from it (`training/restore.py`). `--checkpoint latest` (the default) takes the newest checkpoint in `--output-dir`
(default: $OUTPUT_DIR_MODELS, then `.env`'s, then ../.data/models, as for train.py); `--checkpoint hf:OWNER/NAME`
one shared on the Hugging Face Hub (`python train.py --push-to-hub`), downloaded once into the hub cache.
`--decoder DIR` / `--encoder-weights FILE` point at local copies of the frozen parts the sidecar names.

Decoding (how the next token is chosen; see tiny_decoder/generate.py and tiny_decoder/beam.py):
- greedy (the default): the most probable token at every step;
- beam search (`--beams N`): the N most probable partial outputs, scored by sum log-prob / length ** length_penalty;
- sampling (`--temperature T` > 0, optionally `--top-k`, `--top-p`; `--seed` makes it repeatable).
Each output comes with a score: its mean log-probability per token (including the end-of-text token) under the
model, whatever chose it; for beam search, the beam's own score, which is the same number at --length-penalty 1.

Exit status: 0 when every image was captioned; 1 when some were and others failed (each failure is one
"error: PATH: reason" line on stderr, and the good images are still captioned); 2 when nothing could be done
(no usable image, no checkpoint, a checkpoint that does not match its sidecar, a bad option): one "error:" line.

References: Vinyals et al. 2015, "Show and Tell" (beam search for captions), https://arxiv.org/abs/1411.4555;
Gradio Blocks, https://www.gradio.app/guides/blocks-and-event-listeners
"""

from __future__ import annotations

import os

# Before torch is imported: its OpenMP runtime reads this once, when it loads. PASSIVE lets idle threads sleep instead
# of spinning, which otherwise makes small CPU models 10-20x slower as soon as anything else runs on the machine (see
# the Makefile). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image

from data import CAPTION_PROMPT, encode_prompts, question_prompt
from data.images import image_problem, load_image
from errors import UserError
from training.checkpoint import is_hub_checkpoint, latest_checkpoint, local_checkpoint

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_OUTPUT_DIR = "../.data/models"  # train.py's default (training/config.py)
DEFAULT_PORT = 7860  # Gradio's usual port
PROBLEMS = {  # data.images.image_problem's reasons, as a user reads them
    "missing": "no such file",
    "unreadable": "not an image (or not a format Pillow can read)",
    "truncated": "the image file is truncated (an interrupted download?)",
    "decompression bomb": f"the image is too large (over {Image.MAX_IMAGE_PIXELS or 0:,} pixels)",
}


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
        device: torch.device,
        decoder: str | None = None,
        encoder_weights: str | None = None,
    ) -> None:
        # Imported here: the vision libraries (timm, open_clip) take seconds to import, and a bad path or option
        # should fail at once.
        from training.restore import load_trained

        self.checkpoint = local_checkpoint(checkpoint)  # hf:OWNER/NAME: the downloaded copy in the hub cache
        self.name = str(checkpoint) if is_hub_checkpoint(checkpoint) else self.checkpoint.name
        self.device = device
        self.model, self.tokenizer, self.sidecar = load_trained(
            self.checkpoint, device, decoder=decoder, encoder_weights=encoder_weights
        )
        self.default_max_new_tokens = int(self.sidecar.get("train_config", {}).get("max_new_tokens", 32))
        self.lock = threading.Lock()  # one generation at a time (the web page serves several browsers)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 on a GPU, as in training; fp32 on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
        width = len(prompt) + max(len(t) for t in targets)
        input_ids = torch.full((len(targets), width), pad, dtype=torch.long)  # [B, T], right-padded
        labels = torch.full((len(targets), width), -100, dtype=torch.long)  # [B, T]: -100 = not scored
        for b, target in enumerate(targets):
            input_ids[b, : len(prompt) + len(target)] = torch.tensor(prompt + target)
            labels[b, len(prompt) : len(prompt) + len(target)] = torch.tensor(target)
        scores = self.model.sequence_log_likelihood(
            input_ids.to(self.device), labels.to(self.device), features=features
        )
        return scores.float().tolist()


def make_generator(decoding: Decoding, device: torch.device) -> torch.Generator | None:
    """A seeded generator for sampling (None otherwise): the same seed gives the same outputs."""
    return torch.Generator(device=device).manual_seed(decoding.seed) if decoding.sampling else None


# ---------------------------------------------------------------------------------------------------------------------
# The web page
# ---------------------------------------------------------------------------------------------------------------------


def build_app(captioner: Captioner):
    """The page (a `gradio.Blocks`): image and question on the left, the output and what produced it on the right.

    Gradio Blocks lays components out in rows and columns and attaches Python functions to their events.
    Uploading an image captions it at once; the button (or Enter in the question box) runs again with the question
    and the decoding options. It is the same `Captioner.run` as the command line, so the page and
    `caption.py IMAGE` give the same output for the same options. Under the output, each word shows its map over
    the image on hover or click (`explain/render.py`). Gradio is imported here, not at the top: the
    command line does not need it and it takes seconds to import.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports to Gradio's servers
    import gradio as gr

    def respond(image_path, question, beams, length_penalty, temperature, top_k, top_p, seed, max_new_tokens):
        if not image_path:
            raise gr.Error("Upload an image first.")
        image = load_image(image_path)  # the same safe decoding as the command line
        if image is None:
            raise gr.Error(PROBLEMS.get(image_problem(image_path) or "", "unreadable image"))
        try:
            decoding = Decoding(
                max_new_tokens=int(max_new_tokens),
                num_beams=int(beams),
                length_penalty=float(length_penalty),
                temperature=float(temperature) if temperature > 0 else None,
                top_k=int(top_k) if top_k > 0 else None,
                top_p=float(top_p) if top_p < 1 else None,
                seed=int(seed),
            )
        except UserError as e:
            raise gr.Error(str(e)) from None
        ((text, score),) = captioner.run([image], question, decoding, make_generator(decoding, captioner.device))
        details = (
            f"**prompt** `{prompt_text(question)}` · **decoding** {decoding.describe()} · "
            f"**score** {score:.3f} (mean log-probability per token)"
        )
        from explain.render import page_view  # where it looked, word by word (explain/)

        with captioner.lock:
            maps = page_view(captioner.model, captioner.tokenizer, image, prompt_text(question), text)
        return text, details, maps

    with gr.Blocks(title="tiny-vlm: caption and ask") as app:
        gr.Markdown(f"## Caption an image, or ask about it\nCheckpoint {captioner.summary()}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath", label="Image", sources=["upload", "clipboard"], height=320, elem_id="image"
                )
                question = gr.Textbox(
                    label="Question (empty: a caption)", placeholder="what colour is the circle?", elem_id="question"
                )
                with gr.Accordion("Decoding options", open=False):
                    beams = gr.Slider(1, 8, value=1, step=1, label="Beams (1: greedy, or sampling)")
                    length_penalty = gr.Slider(0.0, 2.0, value=1.0, step=0.1, label="Length penalty (beam search)")
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0: no sampling)")
                    top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1: off)")
                    seed = gr.Number(value=0, precision=0, label="Seed (sampling)")
                    max_new_tokens = gr.Slider(
                        1, 64, value=captioner.default_max_new_tokens, step=1, label="Max new tokens"
                    )
                run = gr.Button("Caption / answer", variant="primary", elem_id="run")
            with gr.Column():
                output = gr.Textbox(label="Caption or answer", interactive=False, elem_id="output")
                details = gr.Markdown(elem_id="details")
                maps = gr.HTML(elem_id="explain")
        inputs = [image, question, beams, length_penalty, temperature, top_k, top_p, seed, max_new_tokens]
        for event in (image.upload, run.click, question.submit):
            event(respond, inputs, [output, details, maps])
    return app


def serve(captioner: Captioner, host: str, port: int) -> None:
    """Serve the page until Ctrl-C. 127.0.0.1 (the default) is reachable from this machine only; 0.0.0.0 opens it
    to the network, with no login: do that only on a network you trust."""
    app = build_app(captioner)
    import gradio as gr

    # System fonts: the default theme fetches its fonts from Google, and the page should work offline.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    print(f"serving {captioner.summary()} on http://{host}:{port}", flush=True)
    try:
        app.launch(server_name=host, server_port=port, share=False, footer_links=[], theme=theme)
    except OSError as e:  # the port is taken
        raise UserError(f"cannot listen on {host}:{port} ({e}); pick another --port") from None


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """An input that could not be captioned, and why (one line for the user)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def collect_images(inputs: Sequence[str]) -> tuple[list[Path], list[Problem]]:
    """The image files named, and those under the folders named (recursively, by suffix, sorted).

    A named file is always tried, whatever its suffix (it fails later, with a reason, if it is no image); inside a
    folder only files with an image suffix count, so a README next to the photos is not an error.
    """
    paths, problems = [], []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(Problem(raw, f"no images in this folder (looked for {' '.join(IMAGE_SUFFIXES)})"))
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            problems.append(Problem(raw, "no such file or folder"))
    return paths, problems


def find_checkpoint(checkpoint: str, output_dir: str | None) -> Path:
    """--checkpoint PATH (or its .json sidecar), for "latest" the newest complete checkpoint in --output-dir, for
    "hf:OWNER/NAME" the pushed checkpoint's local copy in the hub cache (downloaded on first use).

    Checked here, before the slow imports and loads of training/restore.py, so a wrong path fails at once.
    """
    if is_hub_checkpoint(checkpoint):
        return local_checkpoint(checkpoint)
    if checkpoint == "latest":
        return latest_checkpoint(Path(output_dir or default_output_dir()).expanduser())
    path = Path(checkpoint).expanduser()
    path = path.with_suffix(".safetensors") if path.suffix == ".json" else path
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_output_dir() -> str:
    """$OUTPUT_DIR_MODELS, else the one in `.env`, else train.py's default."""
    if os.environ.get("OUTPUT_DIR_MODELS"):
        return os.environ["OUTPUT_DIR_MODELS"]
    if Path(".env").exists():
        from dotenv import dotenv_values

        value = dotenv_values(".env").get("OUTPUT_DIR_MODELS")
        if value:
            return value
    return DEFAULT_OUTPUT_DIR


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="caption.py", description="Caption images or answer a question about them.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (searched recursively)")
    p.add_argument("--question", "-q", help="ask this question about every image instead of captioning it")
    p.add_argument(
        "--checkpoint",
        default="latest",
        help="a .safetensors checkpoint, hf:OWNER/NAME (pushed with train.py --push-to-hub), or 'latest'",
    )
    p.add_argument(
        "--decoder",
        metavar="DIR",
        help="a local copy of the frozen decoder the checkpoint names (when that is not on this machine)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="a local copy of the encoder weights the checkpoint names (when that is not on this machine)",
    )
    p.add_argument("--output-dir", help="where 'latest' looks [env OUTPUT_DIR_MODELS; default ../.data/models]")
    p.add_argument("--out", metavar="FILE.jsonl", help="also write one JSON object per image (path, prompt, ...)")
    p.add_argument("--explain", metavar="DIR", help="also write DIR/IMAGE.png and .json: a map over the image per word")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    g = p.add_argument_group("decoding")
    g.add_argument("--max-new-tokens", type=int, help="longest output (default: the checkpoint's training setting)")
    g.add_argument("--beams", type=int, default=1, help="beam search with this many beams (default 1: none)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log-prob / length**this")
    g.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="beam search: go on while a running beam could still win (default: stop at N finished)")  # fmt: skip
    g.add_argument("--temperature", type=float, help="sample at this temperature (0: greedy)")
    g.add_argument("--top-k", type=int, help="sample among the k most probable tokens only")
    g.add_argument("--top-p", type=float, help="sample among the most probable tokens whose probability reaches p")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    w = p.add_argument_group("web page")
    w.add_argument("--serve", action="store_true", help="serve the web page instead of captioning files")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    return p


def _batches(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def report(problem: Problem | str) -> None:
    print(f"error: {problem}", file=sys.stderr, flush=True)


def caption_files(args: argparse.Namespace, decoding_options: dict[str, Any]) -> int:
    """Caption every image named on the command line; the exit status (see the module docstring)."""
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is invalid; expected an integer >= 1")
    Decoding(**{"max_new_tokens": 1, **decoding_options})  # check the options before any work
    paths, problems = collect_images(args.images)
    for problem in problems:
        report(problem)
    out: IO[str] | None = None
    if args.out:
        try:
            out = open(args.out, "w", encoding="utf-8")  # noqa: SIM115 -- closed in the finally below
        except OSError as e:
            raise UserError(f"cannot write --out {args.out}: {e.strerror}") from None
    captioner: Captioner | None = None
    done = 0
    try:
        for batch in _batches(paths, args.batch_size):
            good: list[tuple[Path, Image.Image]] = []
            for path in batch:
                image = load_image(path)
                if image is None:
                    problems.append(Problem(str(path), PROBLEMS.get(image_problem(path) or "", "unreadable image")))
                    report(problems[-1])
                else:
                    good.append((path, image))
            if not good:
                continue
            if captioner is None:  # only once an image is known to be good: a bad file fails without the model
                checkpoint = find_checkpoint(args.checkpoint, args.output_dir)
                captioner = Captioner(checkpoint, resolve_device(args.device), args.decoder, args.encoder_weights)
                decoding = Decoding(**{"max_new_tokens": captioner.default_max_new_tokens, **decoding_options})
                generator = make_generator(decoding, captioner.device)
            results = captioner.run([image for _, image in good], args.question, decoding, generator)
            prompt = prompt_text(args.question)
            for (path, image), (text, score) in zip(good, results, strict=True):
                print(text if len(paths) == 1 else f"{path}: {text}", flush=True)
                if out is not None:
                    out.write(json.dumps({"path": str(path), "prompt": prompt, "output": text, "score": score}) + "\n")
                    out.flush()
                if args.explain:  # where it looked, word by word (explain/)
                    from explain import explain_and_write

                    explain_and_write(
                        captioner.model, captioner.tokenizer, image, prompt, text, Path(args.explain) / path.stem
                    )
                done += 1
    finally:
        if out is not None:
            out.close()
    if not problems:
        return 0
    return 1 if done else 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    decoding_options = {
        "num_beams": args.beams,
        "length_penalty": args.length_penalty,
        "early_stopping": args.early_stopping,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
    }
    if args.max_new_tokens is not None:
        decoding_options["max_new_tokens"] = args.max_new_tokens
    try:
        if args.serve:
            if args.images:
                raise UserError("--serve takes no image paths; upload images on the page")
            if importlib.util.find_spec("gradio") is None:  # before the model is loaded
                raise UserError("the web page needs Gradio: pip install gradio")
            checkpoint = find_checkpoint(args.checkpoint, args.output_dir)
            captioner = Captioner(checkpoint, resolve_device(args.device), args.decoder, args.encoder_weights)
            serve(captioner, args.host, args.port)
            return 0
        if not args.images:
            raise UserError("no image given: pass image files or folders, or --serve for the web page (see --help)")
        return caption_files(args, decoding_options)
    except UserError as e:
        report(str(e))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
