"""Caption images, or answer a question about them, with a trained checkpoint; or serve a local web page that does.

    python caption.py photo.jpg                                   # a caption, from the newest checkpoint
    python caption.py photos/ --question "what colour is the car?"  # every image under photos/, one answer each
    python caption.py a.png b.png --beams 4 --out results.jsonl    # beam search; one JSON object per image
    python caption.py a.png --temperature 0.8 --top-p 0.9 --seed 1 # sampling
    python caption.py --serve                                      # the web page, on http://127.0.0.1:7860
    CAPTION_AUTH=me:secret python caption.py --serve --host 0.0.0.0  # on the network, behind a login

What happens to an image (the same path as training and evaluation, so the model sees what it was trained on):

    file -- data.images.load_image --> RGB image -- encoder.preprocess --> [3, H, W] -- frozen encoder --> features
    features -- bridge --> N visual tokens; [visual tokens]["Caption:" or "Question: ... Answer:"] -> decoder -> text

The checkpoint's sidecar names the decoder, tokenizer, encoder and its weights, the view and K; the model is rebuilt
from it (`checkpoints/restore.py`). `--checkpoint` takes the forms every command takes (`checkpoints/resolve.py`): a
`.safetensors` file or its `.json` sidecar, a run folder (its newest checkpoint), an output folder (its newest run),
`hf:OWNER/NAME` (one shared on the Hugging Face Hub with `python train.py --push-to-hub`, downloaded once into the
hub cache), or `latest` (the default): the newest run in `--output-dir` (default: $OUTPUT_DIR_MODELS, then `.env`'s,
then `.data/models` beside the repository, as for train.py, wherever the command runs).
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

The page (`--serve`) listens on 127.0.0.1, this machine only. On any other address (`--host 0.0.0.0`) it asks for
a login, from $CAPTION_AUTH=USER:PASSWORD (or `--auth USER:PASSWORD`), and refuses to start without one unless
`--no-auth` is given on purpose. Uploads above `--max-upload-mb` (20) are refused, at most `--queue-size` (16)
requests wait and `--concurrency` (1) run at once. See docs/reliability.md, "The page on a network".

References: Vinyals et al. 2015, "Show and Tell" (beam search for captions), https://arxiv.org/abs/1411.4555;
Gradio Blocks, https://www.gradio.app/guides/blocks-and-event-listeners

Read next: `checkpoints/restore.py` (how the model is rebuilt from a checkpoint), `explain/` (the maps of `--explain`).
"""

from __future__ import annotations

import os

# Before torch is imported: its OpenMP runtime reads this once, when it loads. PASSIVE lets idle threads sleep instead
# of spinning, which otherwise makes small CPU models 10-20x slower as soon as anything else runs on the machine (see
# the Makefile). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
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

from checkpoints.resolve import named_checkpoint
from checkpoints.store import DEFAULT_OUTPUT_DIR, is_hub_checkpoint, local_checkpoint
from data import CAPTION_PROMPT, encode_prompts, question_prompt
from data.batches import pack
from data.images import image_problem, load_image
from errors import OneLineArgumentParser, UserError
from runtime.devices import resolve_device
from runtime.env import absolute, check_file, check_folder, dotenv_values

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_PORT = 7860  # Gradio's usual port
AUTH_ENV = "CAPTION_AUTH"  # USER:PASSWORD for the page's login, kept out of the shell history and `ps`
DEFAULT_MAX_UPLOAD_MB = 20  # a phone photo is 2-12 MB; larger uploads are refused by Gradio (413)
MB = 1024**2  # Gradio counts upload sizes in units of 1024 bytes
DEFAULT_QUEUE_SIZE = 16  # requests that may wait for the model; more are told the queue is full
DEFAULT_CONCURRENCY = 1  # requests that run at once (the model answers one at a time: Captioner.lock)
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


@dataclass(frozen=True)
class PageAccess:
    """Who may open the page, and how much it takes at once (checked by `page_access` before the model loads).

    `login`: (user, password) for Gradio's login form, or None for no login (loopback, or --no-auth on purpose);
    `max_upload_bytes`: the largest file an upload may be (Gradio answers 413 above it);
    `queue_size`: how many requests may wait; beyond it a browser is told the queue is full;
    `concurrency`: how many requests run at once (the model answers one at a time anyway, see Captioner.lock).
    """

    login: tuple[str, str] | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MB
    queue_size: int = DEFAULT_QUEUE_SIZE
    concurrency: int = DEFAULT_CONCURRENCY

    def __repr__(self) -> str:  # never show the password, even in a traceback or a debugger
        user = f"{self.login[0]!r} (password hidden)" if self.login else None
        return (
            f"PageAccess(login={user}, max_upload_bytes={self.max_upload_bytes}, queue_size={self.queue_size}, "
            f"concurrency={self.concurrency})"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost, 127.0.0.0/8 or ::1 (not 0.0.0.0, which is
    every address of the machine, nor a host name or an address of a network interface)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to a network interface
        return False


def parse_login(value: str, where: str) -> tuple[str, str]:
    """USER:PASSWORD (the password may itself hold ':') -> (user, password); `where` names it in the error line,
    which never repeats the value."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise UserError(f"{where} must be USER:PASSWORD, both non-empty")
    return user.strip(), password


def page_access(args: argparse.Namespace, environ: dict[str, str] | None = None) -> PageAccess:
    """The page's login and limits from --auth / $CAPTION_AUTH / --no-auth, --max-upload-mb, --queue-size and
    --concurrency. A page on an address other than loopback needs a login, or --no-auth said on purpose."""
    environ = dict(os.environ) if environ is None else environ
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb {args.max_upload_mb:g} is invalid; expected a number > 0")
    for flag, value in (("--queue-size", args.queue_size), ("--concurrency", args.concurrency)):
        if value < 1:
            raise UserError(f"{flag} {value} is invalid; expected an integer >= 1")
    if args.auth is not None and args.no_auth:
        raise UserError("--auth and --no-auth exclude each other; pick one")
    login = None
    if args.auth is not None:
        login = parse_login(args.auth, "--auth")
    elif environ.get(AUTH_ENV) and not args.no_auth:
        login = parse_login(environ[AUTH_ENV], f"${AUTH_ENV}")
    if login is None and not args.no_auth and not is_loopback(args.host):
        raise UserError(
            f"--host {args.host} opens the page to the network: set a login with {AUTH_ENV}=USER:PASSWORD in the "
            "environment (or --auth USER:PASSWORD), or add --no-auth to serve it to anyone who can reach it"
        )
    return PageAccess(login, int(args.max_upload_mb * MB), args.queue_size, args.concurrency)


def serve(captioner: Captioner, host: str, port: int, access: PageAccess | None = None) -> None:
    """Serve the page until Ctrl-C. 127.0.0.1 (the default) is reachable from this machine only; another address
    opens it to the network, behind Gradio's login when `access.login` is set (see docs/reliability.md)."""
    access = access or PageAccess()
    app = build_app(captioner)
    import gradio as gr

    # At most `queue_size` requests wait and `concurrency` run; the rest are told the queue is full.
    app.queue(max_size=access.queue_size, default_concurrency_limit=access.concurrency)
    # System fonts: the default theme fetches its fonts from Google, and the page should work offline.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    login = f", login as {access.login[0]!r}" if access.login else ", no login"
    print(f"serving {captioner.summary()} on http://{host}:{port}{login}", flush=True)
    if access.login is None and not is_loopback(host):
        print(f"warning: --no-auth: anyone who can reach {host}:{port} can use the page", file=sys.stderr, flush=True)
    try:
        app.launch(
            server_name=host, server_port=port, share=False, footer_links=[], theme=theme,
            auth=access.login, auth_message="tiny-vlm: log in with the user and password the page was started with",
            max_file_size=access.max_upload_bytes,
        )  # fmt: skip
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


def find_checkpoint(checkpoint: str, output_dir: str | None) -> Path | str:
    """--checkpoint, resolved as every command resolves it (`checkpoints.resolve`): a `.safetensors` file or its
    sidecar, a run folder, an output folder, "hf:OWNER/NAME" (returned as is: `Captioner` downloads it once into the
    hub cache), or "latest": the newest checkpoint of the newest run in --output-dir (several runs with different
    settings are named, not guessed between).

    Checked here, before the slow imports and loads of checkpoints/restore.py, so a wrong path fails at once.
    """
    return named_checkpoint(checkpoint, output_dir or default_output_dir(), {}, "--checkpoint")


def default_output_dir() -> str:
    """$OUTPUT_DIR_MODELS, else the one in the repository's `.env`, else train.py's default (all as train.py reads
    them: `.data/models` beside the repository, wherever the command runs)."""
    return os.environ.get("OUTPUT_DIR_MODELS") or dotenv_values().get("OUTPUT_DIR_MODELS") or DEFAULT_OUTPUT_DIR


def check_paths(args: argparse.Namespace) -> None:
    """The folders and files the options name, before any image or model is read: one line for a missing one, or a
    file where a folder is expected and the reverse."""
    if args.decoder is not None and not is_hub_id(args.decoder):
        check_folder(args.decoder, "--decoder", must_exist=True)
    if args.encoder_weights is not None and is_file_path(args.encoder_weights):  # not a timm or open_clip tag
        check_file(args.encoder_weights, "--encoder-weights")
    if args.output_dir is not None:
        check_folder(args.output_dir, "--output-dir")
    if args.explain is not None:
        check_folder(args.explain, "--explain")
    if args.out is not None and absolute(args.out).is_dir():
        raise UserError(f"--out {absolute(args.out)} is a folder; expected a .jsonl file to write")


def is_file_path(value: str) -> bool:
    """Written as a path (`/…`, `~/…`, `./…`, or a weights file's suffix) rather than a library's weights tag."""
    return value.startswith(("/", "~", ".")) or Path(value).suffix in (".safetensors", ".pt", ".pth", ".bin")


def is_hub_id(value: str) -> bool:
    """OWNER/NAME with no local meaning: not an existing path, not written as one."""
    return value.count("/") == 1 and not value.startswith(("/", ".", "~")) and not Path(value).expanduser().exists()


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="caption.py", description="Caption images or answer a question about them.")
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files or folders, searched recursively (no default; none with --serve)",
    )
    p.add_argument("--question", "-q", help="ask this question about every image (default: none, a caption)")
    p.add_argument(
        "--checkpoint",
        default="latest",
        help="a .safetensors checkpoint or its .json sidecar, a run folder (its newest checkpoint), an output folder "
        "(its newest run), hf:OWNER/NAME (pushed with train.py --push-to-hub), or latest: the newest run in "
        "--output-dir",
    )
    p.add_argument(
        "--decoder",
        metavar="DIR",
        help="a local copy of the frozen decoder the checkpoint names, when that is not on this machine (default: "
        "the one its sidecar names)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="a local copy of the encoder weights the checkpoint names, when that is not on this machine (default: "
        "the ones its sidecar names)",
    )
    p.add_argument(
        "--output-dir",
        help="where latest looks (default: $OUTPUT_DIR_MODELS, else .env's, else .data/models beside the repository)",
    )
    p.add_argument("--out", metavar="FILE.jsonl", help="also write one JSON object per image (default: none)")
    p.add_argument(
        "--explain",
        metavar="DIR",
        help="also write DIR/IMAGE.png and .json: a map over the image per word (default: none)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    g = p.add_argument_group("decoding")
    g.add_argument("--max-new-tokens", type=int, help="longest output (default: the checkpoint's training setting)")
    g.add_argument("--beams", type=int, default=1, help="beam search with this many beams (1: none)")
    g.add_argument("--length-penalty", type=float, default=1.0, help="beam score = log-prob / length**this")
    g.add_argument("--no-early-stopping", dest="early_stopping", action="store_false",
                   help="beam search: go on while a running beam could still win (default: stop at N finished)")  # fmt: skip
    g.add_argument("--temperature", type=float, help="sample at this temperature (0: greedy; default: greedy)")
    g.add_argument("--top-k", type=int, help="sample among the k most probable tokens only (default: all)")
    g.add_argument(
        "--top-p", type=float, help="sample among the most probable tokens whose probability reaches p (default: 1)"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    w = p.add_argument_group("web page")
    w.add_argument("--serve", action="store_true", help="serve the web page instead of captioning files")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help="port")
    w.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help=f"ask for this login (better: set {AUTH_ENV}=USER:PASSWORD, kept out of the shell history); "
        f"required for a --host other than loopback unless --no-auth (default: ${AUTH_ENV})",
    )
    w.add_argument("--no-auth", action="store_true", help="serve to the network with no login, on purpose")
    w.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest upload in MB of 2**20 bytes, as Gradio counts")  # fmt: skip
    w.add_argument(
        "--queue-size", type=int, default=DEFAULT_QUEUE_SIZE, help="requests that may wait; more are refused"
    )
    w.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests that run at once")
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
                captioner = Captioner(checkpoint, args.device, args.decoder, args.encoder_weights)
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
        Decoding(**{"max_new_tokens": 1, **decoding_options})  # check the options before any work
        check_paths(args)
        if not 0 <= args.port <= 65535:
            raise UserError(f"--port {args.port} is invalid; expected 0..65535")
        if args.serve:
            if args.images:
                raise UserError("--serve takes no image paths; upload images on the page")
            access = page_access(args)  # before the model is loaded: a page on the network needs a login
            if importlib.util.find_spec("gradio") is None:
                raise UserError("the web page needs Gradio: pip install gradio")
            checkpoint = find_checkpoint(args.checkpoint, args.output_dir)
            captioner = Captioner(checkpoint, args.device, args.decoder, args.encoder_weights)
            serve(captioner, args.host, args.port, access)
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
