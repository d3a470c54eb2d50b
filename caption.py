"""Caption images, or answer a question about them, with a trained checkpoint; or serve a local web page that does.

    python caption.py photo.jpg                                   # a caption, from the newest checkpoint
    python caption.py photos/ --question "what colour is the car?"  # every image under photos/, one answer each
    python caption.py a.png b.png --beams 4 --out results.jsonl    # beam search; one JSON object per image
    python caption.py a.png --temperature 0.8 --top-p 0.9 --seed 1 # sampling
    python caption.py --serve                                      # the web page, on http://127.0.0.1:7860
    CAPTION_AUTH=me:secret python caption.py --serve --host 0.0.0.0  # on the network, behind a login

This file is the command line only; the work is done by `captioning/` (`Captioner` and `Decoding`, which Python
code imports with `from captioning import Captioner, Decoding`; the page, its login and limits, the server).

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

Reference: Vinyals et al. 2015, "Show and Tell" (beam search for captions), https://arxiv.org/abs/1411.4555

Read next: `captioning/__init__.py` (the library and the page this command runs), `explain/` (the maps of `--explain`).
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from PIL import Image

from captioning.access import AUTH_ENV, DEFAULT_CONCURRENCY, DEFAULT_MAX_UPLOAD_MB, DEFAULT_QUEUE_SIZE, page_access
from captioning.captioner import Captioner, Decoding, make_generator, prompt_text
from captioning.files import PROBLEMS, Problem, collect_images
from captioning.server import DEFAULT_PORT, serve
from checkpoints.resolve import named_checkpoint
from checkpoints.store import DEFAULT_OUTPUT_DIR
from data.images import image_problem, load_image
from errors import OneLineArgumentParser, UserError
from runtime.env import absolute, check_file, check_folder, dotenv_values


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

                    with captioner.autocast():  # as the caption was made (bf16 autocast on a GPU)
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
