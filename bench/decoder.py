"""Decoder forward and forward+backward: our Qwen3 against transformers' Qwen3ForCausalLM, same weights and input.

    python -m bench.decoder                      # Qwen3-0.6B size, batch 1 x 128 tokens, fp32, 1 thread
    python -m bench.decoder --layers 4 --no-write   # a quick look

Both models compute the logits of every position (the usual forward). Forward+backward adds the next-token
cross-entropy over all positions, F.cross_entropy(logits[:, :-1], ids[:, 1:]), the same loss for both, and a
backward pass into every weight (all parameters train, as in pre-training). The speed-up is transformers' median
time divided by ours (> 1: ours is faster). Before timing, the script checks that both models give the same logits.

Read next: `bench/generation.py` (decoding speed), `tiny_decoder/model.py` (what is timed).
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from bench import common
from tiny_decoder import Qwen3Config

TARGET = 1.0  # ours at least as fast as transformers, forward and forward+backward


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of position t predicting token t + 1; logits [B, T, vocab], ids [B, T]."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())  # [B*(T-1), vocab]


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument("--batch", type=int, default=1, help="sequences per forward pass")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence")
    parser.add_argument(
        "--layers", type=int, default=None, help="fewer blocks than Qwen3-0.6B's 28, for quick runs (default: 28)"
    )
    common.add_common_args(parser, repeats=5)
    return parser


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"batch": 1, "seq": 1, "layers": 1, "threads": 1, "repeats": 1, "warmup": 0}
    args = common.parse_args(parser, argv, minimums)
    common.set_threads(args.threads)
    info = common.machine()

    config = Qwen3Config.qwen3_0_6b()
    if args.layers:
        config = dataclasses.replace(config, num_hidden_layers=args.layers)
    path = common.random_checkpoint(config, args.work_dir)
    ours, theirs = common.load_ours(path), common.load_theirs(path)
    torch.manual_seed(0)
    ids = torch.randint(0, 151_669, (args.batch, args.seq))  # ids the tokenizer can produce

    with torch.no_grad():
        max_diff = (ours(ids) - theirs(ids).logits).abs().max().item()
    print(f"same weights and input: max |logits(ours) - logits(transformers)| = {max_diff:.2e}")

    def forward(model, hf: bool):
        def run():
            with torch.no_grad():
                out = model(ids)
                return out.logits if hf else out

        return run

    def forward_backward(model, hf: bool):
        def run():
            out = model(ids)
            next_token_loss(out.logits if hf else out, ids).backward()
            model.zero_grad(set_to_none=True)  # free the gradients: one model's at a time in memory

        return run

    results = {}
    for what, make in (("forward", forward), ("forward+backward", forward_backward)):
        print(f"timing {what}: {args.warmup} warm-up + {args.repeats} interleaved repeats each ...", flush=True)
        results[what] = common.interleaved(
            {"ours": make(ours, False), "transformers": make(theirs, True)}, args.repeats, args.warmup
        )

    tokens = args.batch * args.seq
    command = f"`{common.command_line('bench.decoder', argv)}`"
    rows, met = [], {}
    for what, times in results.items():
        speedup = common.median(times["transformers"]) / common.median(times["ours"])
        met[what] = speedup >= TARGET
        rows.append(
            [
                f"{what}, {args.batch} x {args.seq} tokens",
                common.spread(times["ours"]),
                common.spread(times["transformers"]),
                f"{tokens / common.median(times['ours']):.0f} / {tokens / common.median(times['transformers']):.0f}",
                f"**{speedup:.2f}x**",
                command,
            ]
        )
    headers = ["measurement", "ours s", "transformers s", "tokens/s ours / theirs", "speed-up", "command"]
    table = common.markdown_table(headers, rows)
    print(table)

    body = f"""Run {common.today()}. Machine: {common.machine_line(info, common.machine()["load_average"])}.

Settings: {common.config_name(config)}; random weights (seed 0) saved once and loaded by both models; fp32 on CPU;
transformers with `attn_implementation="sdpa"`; input {args.batch} x {args.seq} random token ids; forward = logits of
every position under `torch.no_grad()`; forward+backward = the same plus next-token cross-entropy over all positions
and `.backward()` into all {sum(p.numel() for p in ours.parameters()) / 1e6:.0f}M weights. Same logits checked first:
max |difference| = {max_diff:.1e}. Times: median (min-max) of {args.repeats} interleaved repeats after
{args.warmup} warm-up call(s); speed-up = transformers' median time / ours.

{table}

Target (speed-up >= {TARGET:.1f}x): forward {common.verdict(met["forward"])}, forward+backward
{common.verdict(met["forward+backward"])}."""
    if not args.no_write:
        common.write_section("decoder", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
