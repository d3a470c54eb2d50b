"""`python -m synth`: caption and question data from a teacher model, resumable, optionally uploaded to the hub.

    python -m synth --images flickr30k --out ../.data/synthetic/flickr30k-qwen --limit 2000     # GPU: ~minutes
    python -m synth --images path/to/photos --out out/photos --questions 3 --batch-size 16
    python -m synth --out out/photos --push-to-hub me/photos-qwen-captions --dry-run          # what would go up
    python -m synth --out out/photos --push-to-hub me/photos-qwen-captions                    # private by default
    python train.py --data flickr30k,synthetic:../.data/synthetic/flickr30k-qwen              # train on it

Run it again with the same arguments to carry on after an interruption (or with a larger --limit to add
images): the images already in --out are skipped. Expected mistakes end with one line and exit status 2.

Read next: `synth/run.py` (the loop this command runs), `synth/prompt.py` (how each answer is checked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from errors import OneLineArgumentParser, UserError
from runtime.env import DEFAULT_CACHE_DIR, check_folder

from .dataset import read_all, write_card
from .hub import check_repo_id, describe_upload, push_to_hub
from .run import generate, list_images
from .teacher import DEFAULT_TEACHER, MAX_PIXELS, QwenTeacher

console = Console(stderr=True, highlight=False)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m synth", description="Caption and question data from a teacher model (see synth/__main__.py)."
    )
    parser.add_argument(
        "--images",
        help="'flickr30k', 'hf:OWNER/REPO' (Flickr30k's hub layout) or a folder of images (default: none, upload only)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the dataset folder (created, or resumed)")
    parser.add_argument("--questions", type=int, default=5, help="question-answer pairs asked per image")
    parser.add_argument("--batch-size", type=int, default=8, help="images per generate call")
    parser.add_argument("--limit", type=int, help="only the first N images of --images, sorted by path (default: all)")
    parser.add_argument("--model", default=DEFAULT_TEACHER, help="teacher: hub id or local folder")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="longest answer, in tokens")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="images are resized to at most this")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(DEFAULT_CACHE_DIR),
        help="where Flickr30k is cached (.data/cache beside the repository by default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled retries")
    parser.add_argument(
        "--push-to-hub", metavar="REPO", help="upload --out to this hub dataset repo, OWNER/NAME (default: none)"
    )
    parser.add_argument("--public", action="store_true", help="create the hub repo public (default: private)")
    parser.add_argument("--dry-run", action="store_true", help="show what would be generated and uploaded; do nothing")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Every mistake we can see before loading anything, as a `UserError`."""
    if args.images is None and args.push_to_hub is None:
        raise UserError("nothing to do: pass --images to generate data, and/or --push-to-hub REPO to upload --out")
    if args.public and args.push_to_hub is None:
        raise UserError("--public only applies to an upload; add --push-to-hub REPO")
    lows = (("questions", 0), ("batch_size", 1), ("limit", 1), ("max_new_tokens", 1), ("max_pixels", 3136), ("seed", 0))
    for name, low in lows:
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    if args.push_to_hub is not None:
        check_repo_id(args.push_to_hub)
    check_folder(args.out, "--out", must_exist=args.images is None)  # an upload alone needs the dataset folder
    check_folder(args.cache_dir, "--cache-dir")
    if args.images is not None and args.images != "flickr30k" and not args.images.startswith("hf:"):
        check_folder(args.images, "--images", must_exist=True)  # a folder of images (a dry run too)
    if args.model.startswith(("/", ".", "~")):  # a local copy of the teacher, not a hub id
        check_folder(args.model, "--model", must_exist=True)


def dry_run(args: argparse.Namespace) -> None:
    """Say what a real run would do, without the network, the teacher or the images."""
    accepted, rejected = read_all(args.out) if args.out.is_dir() else ([], [])
    console.print(
        f"dry run: {args.out} holds {len(accepted):,} described images and {len(rejected):,} rejected", soft_wrap=True
    )
    if args.images is not None:
        limit = f"the first {args.limit:,} images" if args.limit else "every image"
        console.print(
            f"dry run: would ask {args.model} about {limit} of {args.images} not yet in {args.out} "
            f"(a caption and {args.questions} questions each, {args.batch_size} images per batch)",
            soft_wrap=True,
        )
    if args.push_to_hub is not None:
        console.print(describe_upload(args.out, args.push_to_hub, private=not args.public), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        if args.dry_run:
            dry_run(args)
            return 0
        if args.images is not None:
            images = list_images(args.images, args.cache_dir, args.limit)
            teacher = QwenTeacher(args.model, max_new_tokens=args.max_new_tokens, max_pixels=args.max_pixels)
            stats = generate(
                images, teacher, args.out, args.questions, args.batch_size, seed=args.seed, console=console
            )
            console.print(
                f"this run: {stats.accepted:,} images described ({stats.qa_pairs:,} questions), "
                f"{stats.rejected:,} rejected, {stats.skipped_done:,} already done; dataset in {args.out}"
            )
        elif args.out.is_dir():
            write_card(args.out)  # an upload of an existing folder: refresh its card first
        if args.push_to_hub is not None:
            url = push_to_hub(args.out, args.push_to_hub, private=not args.public)
            console.print(f"uploaded {args.out} to {url}")
    except UserError as err:
        console.print(f"[red]error:[/] {err}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print(f"interrupted: what was written is in {args.out}; run the same command again to carry on")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
