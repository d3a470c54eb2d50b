"""`python -m explain.pointing`: the pointing game on a trained model, from the command line.

    python -m explain.pointing --checkpoint RUN/3_tiny_top2.safetensors                      # the demo model
    python -m explain.pointing --checkpoint HIDDEN.safetensors --checkpoint POOLED.safetensors --best-head \\
        --out experiments/results/pointing                                                    # EXPERIMENTS.md
    python -m explain.pointing --checkpoint CKPT --data flickr30k-entities:ENTITIES_DIR --images FLICKR_IMAGES

Each `--checkpoint` is loaded and played in turn (one view each); `--data shapes` plays the game of
`explain/pointing/shapes.py` on the checkpoint's own held-out split, `--data flickr30k-entities:DIR` the one of
`explain/pointing/flickr.py`. The table is printed; `--out` also writes results.json, table.md and the figure
(`explain/pointing/report.py`).

Read next: `EXPERIMENTS.md` ("Where the model looks") for the numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from errors import UserError
from explain import attention as attention_maps
from explain.pointing.flickr import flickr_game, training_images
from explain.pointing.report import figure, flickr_table, shapes_table
from explain.pointing.shapes import best_head, shapes_game

DEFAULT_METHODS = ("attention:last", "attention:mean", "attention:rollout", "occlusion:background", "occlusion:mean",
                   "occlusion:blur")  # fmt: skip


def default_methods(model) -> list[str]:
    """DEFAULT_METHODS plus each layer's attention alone."""
    layers = [f"attention:layer:{i}" for i in range(model.decoder.config.num_hidden_layers)]
    return [*DEFAULT_METHODS[:3], *layers, *DEFAULT_METHODS[3:]]


def check_methods(methods: Sequence[str], model) -> None:
    from explain.occlusion import FILLS

    cfg = model.decoder.config
    for method in methods:
        kind, _, option = method.partition(":")
        try:
            if kind == "attention":
                attention_maps.check_choice(option, cfg.num_hidden_layers, cfg.num_attention_heads)
            elif kind != "occlusion" or option not in FILLS:
                raise ValueError(f"expected attention:CHOICE or occlusion:{{{','.join(FILLS)}}}")
        except ValueError as e:
            raise UserError(f"--methods: {method!r} is invalid ({e})") from None


def build_parser():
    from errors import OneLineArgumentParser

    p = OneLineArgumentParser(prog="python -m explain.pointing", description="The pointing game (explain/pointing/).")
    p.add_argument("--checkpoint", action="append", required=True,
                   help="a .safetensors checkpoint or its .json sidecar, a run folder, an output folder, hf:OWNER/NAME "
                   "or latest (checkpoints/resolve.py); repeat for each view")  # fmt: skip
    p.add_argument("--data", default="shapes",
                   help="shapes (the checkpoint's own held-out split) or flickr30k-entities:DIR (Sentences/, Annotations/)")  # fmt: skip
    p.add_argument("--images", help="with flickr30k-entities: the folder of Flickr30k photos, ID.jpg (default: none)")
    p.add_argument("--split", default="test", help="the split to score (default test)")
    p.add_argument("--limit", type=int, help="score only the first N images of the split (default: all)")
    p.add_argument("--methods", help="comma-separated attention:CHOICE / occlusion:FILL (default: all of them)")
    p.add_argument("--best-head", action="store_true", help="also score the head that points best on the val split")
    p.add_argument("--no-controls", action="store_true", help="skip the untrained-bridge and shuffled-image controls")
    p.add_argument("--grid", type=int, help="occlusion cells per side on Flickr30k (default: explain.explanation)")
    p.add_argument("--include-training-images", action="store_true",
                   help="flickr30k-entities: score the photos of the checkpoint's training split too (default: left out)")  # fmt: skip
    p.add_argument("--cache-dir", help="where the training data is cached (default: the checkpoint's training setting)")
    p.add_argument("--out", help="also write results.json, table.md and pointing.png into this folder (default: none)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: fastest for the demo's sizes)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p


def check_args(args) -> None:
    """Every option's mistake, before any checkpoint is read: one line (`UserError`), exit status 2."""
    from runtime.env import check_folder

    for flag, value in (("--threads", args.threads), ("--limit", args.limit), ("--grid", args.grid)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} is invalid; expected an integer >= 1")
    if args.split not in ("train", "val", "test"):
        raise UserError(f"--split {args.split!r} is invalid; expected train, val or test")
    if args.data != "shapes" and not args.data.startswith("flickr30k-entities:"):
        raise UserError(f"--data {args.data!r} is invalid; expected shapes or flickr30k-entities:DIR")
    if args.data.startswith("flickr30k-entities:"):
        if not args.images:
            raise UserError("--data flickr30k-entities:DIR needs --images FOLDER (the Flickr30k photos)")
        check_folder(args.data.removeprefix("flickr30k-entities:"), "--data flickr30k-entities:", must_exist=True)
        check_folder(args.images, "--images", must_exist=True)
    for flag, folder in (("--cache-dir", args.cache_dir), ("--out", args.out)):
        if folder is not None:
            check_folder(folder, flag)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: this machine has no CUDA GPU that torch can use")


def run(args) -> dict:
    from checkpoints.resolve import checkpoint_file
    from checkpoints.restore import load_trained
    from data import load_dataset
    from data.flickr30k_entities import read_entities
    from explain.explanation import default_grid
    from explain.sequence import check_explainable
    from runtime.env import DEFAULT_CACHE_DIR

    check_args(args)
    results: dict = {"data": args.data, "split": args.split, "views": {}}
    for checkpoint in args.checkpoint:
        path = checkpoint_file(checkpoint)  # a file, a run or output folder, hf:OWNER/NAME or latest (checkpoints/)
        model, tokenizer, sidecar = load_trained(path, args.device)
        check_explainable(model)
        methods = args.methods.split(",") if args.methods else default_methods(model)
        check_methods(methods, model)
        view = model.config.view if model.config.view not in results["views"] else f"{model.config.view} ({path})"
        cache = args.cache_dir or sidecar.get("train_config", {}).get("cache_dir", DEFAULT_CACHE_DIR)
        if args.data == "shapes":
            data = sidecar.get("data", {})
            if data.get("source") != "shapes":
                raise UserError(f"{checkpoint} was not trained on the shapes set; use --data flickr30k-entities:DIR")
            splits, _ = load_dataset("shapes", cache_dir=Path(cache), split=data["split"], seed=data["seed"])
            records = getattr(splits, args.split)[: args.limit]
            extra = {}
            if args.best_head and model.config.view == "hidden":
                choice, scores = best_head(model, tokenizer, splits.val[: args.limit])
                methods = [*methods, "attention:" + choice]
                extra = {"best_head": choice, "head_accuracy_on_val": scores}
            outcome = shapes_game(model, tokenizer, records, methods, controls=not args.no_controls)
            results["views"][view] = {"checkpoint": path.name, "epoch": sidecar.get("epoch"), **outcome, **extra}
        else:
            root = Path(args.data.removeprefix("flickr30k-entities:"))
            entries = read_entities(root, args.split, args.limit)
            grid = args.grid or default_grid(model)
            training = training_images(sidecar, Path(cache).expanduser())
            results["views"][view] = flickr_game(
                model, tokenizer, entries, Path(args.images), methods, grid,
                training=training, leave_out_training=not args.include_training_images,
            )  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    from runtime.files import write_text_atomically

    args = build_parser().parse_args(argv)
    try:
        check_args(args)  # --threads 0 included, before torch is asked for 0 threads
        torch.set_num_threads(args.threads)
        results = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = shapes_table(results) if args.data == "shapes" else flickr_table(results)
    print(table)
    if args.out:
        out = Path(args.out)
        write_text_atomically(out / "results.json", json.dumps(results, indent=1) + "\n")
        write_text_atomically(out / "table.md", table)
        if args.data == "shapes":
            figure(results, out / "pointing.png")
        print(f"wrote {out}/results.json, table.md" + (", pointing.png" if args.data == "shapes" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
