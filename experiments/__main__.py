"""python -m experiments: run the alignment experiments (see experiments/__init__.py and EXPERIMENTS.md).

python -m experiments transfer                       # the transfer grid on the shapes set, 2 seeds, 2 at a time
python -m experiments transfer views two-stage       # all three
python -m experiments what-trains                    # which parameters should learn, forgetting included
python -m experiments smoke --results-dir /tmp/r     # two short cells (what CI runs)
python -m experiments transfer --decoder Qwen/Qwen3-0.6B-Base --encoder vit --data flickr30k --jobs 1
python -m experiments transfer views two-stage --results-dir experiments/results   # re-make the committed tables

Records, tables and figures go to `.data/experiments/results/` beside the repository by default, never into it: the
committed ones in `experiments/results/` are re-made only on purpose, with `--results-dir experiments/results`. A
rerun reuses every record that still describes its run, and says how many it reused and how many it trained.

Read next: `experiments/runner.py` (what this command runs), `experiments/grids.py` (the grids it names).
"""

from __future__ import annotations

import os
import shlex
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: sleeping, not spinning, OpenMP threads

from errors import OneLineArgumentParser, UserError  # noqa: E402
from experiments import what_trains  # noqa: E402
from experiments.grids import ALL, GRIDS, GridOptions, build_grid  # noqa: E402
from experiments.runner import Setup, cell_configs, demo_base, run_grid, write_figures, write_table  # noqa: E402
from runtime.env import DATA_ROOT, DEFAULT_CACHE_DIR, absolute, check_folder  # noqa: E402
from runtime.signals import Stopped  # noqa: E402
from tiny_decoder import Qwen3Config  # noqa: E402
from training.decoders import RANDOM_INIT  # noqa: E402

WORK_DIR = DATA_ROOT / "experiments"  # the runs' checkpoints and logs
RESULTS_DIR = WORK_DIR / "results"  # records, tables and figures of a plain `python -m experiments`


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m experiments", description="Run grids of training configurations, several seeds each."
    )
    parser.add_argument("grids", nargs="*", default=["transfer"], metavar="GRID", help=f"{', '.join(GRIDS)}")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    parser.add_argument("--jobs", default="2", help="cells trained at the same time, one process each")
    parser.add_argument("--epochs", default=None, help="epochs per cell (default: the demo's 3)")
    parser.add_argument("--k", default=None, help=f"transfer grid's K values (default: 0,1,2,{ALL})")
    parser.add_argument("--views", default=None, help="views grid's views (default: pooled,hidden)")
    parser.add_argument(
        "--tokens", default=None, help="views grid's visual-token counts (default: 1,4,9 on the demo; 1,4,16 real)"
    )
    parser.add_argument("--stage1-epochs", default=None, help="two-stage grid: bridge-only epochs (default: 1)")
    parser.add_argument("--two-stage-k", default=None, help="two-stage grid: K of the second stage (default: 2)")
    parser.add_argument(
        "--eval-every",
        default=None,
        help="validation every N steps for the curves (default: 650 on the demo, about twice an epoch; 0 real)",
    )
    parser.add_argument(
        "--results-dir",
        default=str(RESULTS_DIR),
        help="records, tables and figures (outside the repository; --results-dir experiments/results re-makes the "
        "committed ones)",
    )
    parser.add_argument("--work-dir", default=str(WORK_DIR), help="checkpoints, run directories, logs")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="datasets, features, the pretrained demo LM")
    parser.add_argument("--wandb", default="auto", help="auto (online with an API key, else offline), online, "
                        "offline or disabled; each grid's runs form one W&B group named after the grid")  # fmt: skip
    parser.add_argument(
        "--decoder", default=None, help="a real Qwen3 checkpoint, hub id or directory (default: the demo's decoders)"
    )
    parser.add_argument("--encoder", default=None, help="vit or clip, with --decoder/--data (default: the demo's tiny)")
    parser.add_argument("--encoder-weights", default=None, help="encoder weights tag or file (default: the encoder's)")
    parser.add_argument(
        "--data", default=None, help="flickr30k, a local directory, ..., as train.py's --data (default: shapes)"
    )
    return parser


def integers(flag: str, text: str, low: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r} is invalid; expected comma-separated integers >= {low}") from None
    if not values or min(values) < low:
        raise UserError(f"{flag} {text!r} is invalid; expected comma-separated integers >= {low}")
    return values


def default_epochs(grid: str, base: dict) -> int:
    """Epochs per cell: the base configuration's (the demo's 3), but 2 for the what-trains grid, whose 9 methods x 3
    learning rates would not fit the demo's 30 minutes on two cores at 3 (experiments/what_trains.py)."""
    return 2 if grid == "what-trains" else base.get("epochs", GridOptions.epochs)


def setup_for(grid: str, args) -> tuple[Setup, GridOptions, Qwen3Config]:
    """The grid's shared configuration, its options, and the decoder's config (its depth for K = all, its layers'
    sizes for the LoRA ranks of the what-trains grid)."""
    real = any(v is not None for v in (args.decoder, args.encoder, args.data, args.encoder_weights))
    if real:  # the same grid on real weights and data: train.py's defaults (Qwen3-0.6B-Base, ViT-B/16, Flickr30k)
        from weights_loader import resolve_checkpoint

        base = {k: v for k, v in (("encoder", args.encoder), ("encoder_weights", args.encoder_weights),
                                  ("data", args.data)) if v is not None}  # fmt: skip
        decoder = args.decoder or "Qwen/Qwen3-0.6B-Base"
        config = resolve_checkpoint(decoder, need="tokenizer") / "config.json"  # its config, not yet its weights
        decoder_config = Qwen3Config.from_json_file(config)
        pretrained, random, tokens, eval_every = decoder, RANDOM_INIT + decoder, (1, 4, 16), 0
    else:  # the offline demo's shapes set, tiny encoder and 3-block decoder
        from demo.decoders import demo_config

        base, decoder_config = demo_base(), demo_config()
        pretrained, random, tokens, eval_every = "demo-pretrained", "demo", (1, 4, 9), 650
    if args.eval_every is not None:
        eval_every = integers("--eval-every", args.eval_every, 0)[0]
    base |= {"cache_dir": args.cache_dir, "wandb": args.wandb, "eval_every": eval_every}
    options = GridOptions(
        k=tuple(v.strip() for v in args.k.split(",")) if args.k else GridOptions.k,
        views=tuple(v.strip() for v in args.views.split(",")) if args.views else GridOptions.views,
        tokens=integers("--tokens", args.tokens, 1) if args.tokens else tokens,
        epochs=integers("--epochs", args.epochs, 1)[0] if args.epochs else default_epochs(grid, base),
        stage1_epochs=integers("--stage1-epochs", args.stage1_epochs, 1)[0] if args.stage1_epochs else 1,
        two_stage_k=args.two_stage_k or GridOptions.two_stage_k,
    )
    for view in options.views:
        if view not in ("pooled", "hidden"):
            raise UserError(f"--views value {view!r} is invalid; accepted: pooled, hidden")
    if not (options.two_stage_k == ALL or options.two_stage_k.isdigit()):  # its range: the grid checks it (top_k)
        raise UserError(
            f"--two-stage-k {options.two_stage_k!r} is invalid; accepted: integers 0..{decoder_config.num_hidden_layers} or 'all'"
        )
    command = "python -m experiments " + " ".join(shlex.quote(a) for a in args.argv)
    setup = Setup(grid, base, pretrained, random, absolute(args.results_dir), absolute(args.work_dir), command)
    return setup, options, decoder_config


def check_cells(setup: Setup, cells, seed: int) -> None:
    """Every cell's configuration is valid (TrainConfig checks each value), and what the grid reads exists (the data
    source and the encoder weights, by their form: `training/preflight.py`'s checks), before anything trains."""
    from bridge.vlm import check_visual_tokens
    from data.loading import check_source
    from vision.encoders import check_weights

    configs = [config for cell in cells for config in cell_configs(setup, cell, seed)]
    check_source(configs[0].data)
    check_weights(configs[0].model.encoder, configs[0].model.encoder_weights)
    if setup.base.get("encoder_weights") == "none":  # a random encoder is built in a moment: check its token count
        from vision import build_encoder

        tokens = build_encoder(setup.base["encoder"], "none").num_tokens
        for c in configs:
            check_visual_tokens(c.model, tokens)


def check_folders(args) -> None:
    """--results-dir, --work-dir and --cache-dir are folders (or will be), not files."""
    for flag in ("--results-dir", "--work-dir", "--cache-dir"):
        check_folder(getattr(args, flag.removeprefix("--").replace("-", "_")), flag)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = sys.argv[1:] if argv is None else argv  # written into the tables: the command that made them
        seeds = integers("--seeds", args.seeds, 0)
        jobs = integers("--jobs", args.jobs, 1)[0]
        check_folders(args)
        plans = []
        for grid in args.grids:  # every grid and value is checked before anything trains
            setup, options, decoder_config = setup_for(grid, args)
            cells = build_grid(grid, options, decoder_config)
            check_cells(setup, cells, seeds[0])
            plans.append((setup, cells))
        for setup, cells in plans:
            if setup.grid == "what-trains":  # a learning-rate sweep on the first seed, then the best on the others
                records, chosen = what_trains.run_what_trains(setup, cells, seeds, jobs=jobs)
                print(f"{setup.grid}: {what_trains.write_table(setup, records, chosen, cells)}")
                print(f"{setup.grid}: {what_trains.write_figure(setup, records, chosen)}")
                continue
            records = run_grid(setup, cells, seeds, jobs=jobs)  # says how many it reused and how many it trained
            print(f"{setup.grid}: {write_table(setup, records)}")
            for path in write_figures(setup, records):
                print(f"{setup.grid}: {path}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Stopped as stopped:  # a signal stopped the cell's run after its checkpoint (runtime/signals.py)
        return stopped.status
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
