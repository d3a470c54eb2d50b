"""Greedy generation: tokens/s of our `generate` (preallocated KV cache) against transformers' `generate`.

    python -m bench.generation                        # Qwen3-0.6B and the demo decoder, batch 1 and 8
    python -m bench.generation --sizes demo --no-write   # a quick look

Both continue the same random 32-token prompts (no padding) for exactly 64 tokens: end-of-text is disabled, so no
row stops early. Tokens/s = batch x 64 / wall time of the whole call (prefill included, as a user sees it). The
script also reports whether both produced the same tokens (they should: same weights, same greedy rule).

Two sizes, because they measure different things. At Qwen3-0.6B's size one decoding step at batch 1 reads all
2.4 GB of fp32 weights to produce one token, so both implementations wait on memory and the code around the
matmuls hardly matters. The demo decoder (d=128, a few blocks) does almost no arithmetic per token: its speed is the
per-token overhead of the decoding loop itself (cache updates, masks, logits processing, Python).

Read next: `bench/train_step.py` (a training step: time and memory), `tiny_decoder/generate.py` (what is timed).
"""

from __future__ import annotations

import argparse

import torch

from bench import common

TARGET = 1.5  # ours >= 1.5x transformers' tokens/s at batch 1


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--sizes", nargs="+", default=["0.6b", "demo"], choices=["0.6b", "demo"], help="the decoders measured"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes measured")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--new", type=int, default=64, help="new tokens")
    parser.add_argument(
        "--layers", type=int, default=None, help="keep fewer blocks, for quick runs (default: all of each decoder's)"
    )
    common.add_common_args(parser, repeats=3)
    return parser


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"batches": 1, "prompt": 1, "new": 1, "layers": 1, "threads": 1, "repeats": 1, "warmup": 0}
    args = parser.parse_args(argv)  # the blocks kept may not exceed the shallowest decoder measured
    blocks = min(common.decoder_config(size).num_hidden_layers for size in args.sizes)
    args = common.parse_args(parser, argv, minimums, blocks=blocks)
    common.set_threads(args.threads)
    info = common.machine()
    command = f"`{common.command_line('bench.generation', argv)}`"

    rows, speedups, settings = [], {}, []
    for size in args.sizes:
        config = common.decoder_config(size, args.layers)
        settings.append(f"{size}: {common.config_name(config)}")
        path = common.random_checkpoint(config, args.work_dir)
        ours, theirs = common.load_ours(path), common.load_theirs(path)
        theirs.generation_config.eos_token_id = None  # never stop early: exactly `new` tokens per row
        theirs.generation_config.pad_token_id = 0
        for batch in args.batches:
            torch.manual_seed(batch)
            prompt = torch.randint(0, min(config.vocab_size, 151_669), (batch, args.prompt))
            mask = torch.ones_like(prompt)
            outputs = {}

            def run_ours(prompt=prompt, outputs=outputs, model=ours):
                outputs["ours"] = model.generate(prompt, max_new_tokens=args.new, eos_token_id=[])

            def run_theirs(prompt=prompt, mask=mask, outputs=outputs, model=theirs):
                out = model.generate(prompt, attention_mask=mask, max_new_tokens=args.new, do_sample=False)
                outputs["transformers"] = out[:, args.prompt :]  # [B, new]: the new tokens only

            print(f"{size}, batch {batch}: {args.warmup} warm-up + {args.repeats} repeats each ...", flush=True)
            times = common.interleaved({"ours": run_ours, "transformers": run_theirs}, args.repeats, args.warmup)
            assert outputs["ours"].shape == outputs["transformers"].shape == (batch, args.new)
            same = (outputs["ours"] == outputs["transformers"]).float().mean().item()
            tokens = batch * args.new
            speedups[size, batch] = common.median(times["transformers"]) / common.median(times["ours"])
            rows.append(
                [
                    f"{size}, batch {batch}",
                    common.spread([tokens / t for t in times["ours"]], fmt=".1f"),
                    common.spread([tokens / t for t in times["transformers"]], fmt=".1f"),
                    f"**{speedups[size, batch]:.2f}x**",
                    f"{100 * same:.0f}%",
                    command,
                ]
            )
        del ours, theirs
    headers = ["decoder, batch", "ours tokens/s", "transformers tokens/s", "speed-up", "same tokens", "command"]
    table = common.markdown_table(headers, rows)
    print(table)

    targets = [
        f"{size}: {common.verdict(speedups[size, 1] >= TARGET)} ({speedups[size, 1]:.2f}x)"
        for size in args.sizes
        if (size, 1) in speedups
    ]
    body = f"""Run {common.today()}. Machine: {common.machine_line(info, common.machine()["load_average"])}.

Settings: {"; ".join(settings)}. Random weights (seed 0), fp32 on CPU; {args.prompt}-token random prompts without
padding, {args.new} new tokens, greedy, end-of-text disabled. Ours: `Qwen3ForCausalLM.generate` (preallocated KV
cache); transformers: `generate(do_sample=False)` with its default dynamic cache and `attn_implementation="sdpa"`.
Tokens/s = batch x {args.new} / wall time of the call, prefill included: median (min-max) of {args.repeats}
interleaved repeats after {args.warmup} warm-up call(s); speed-up = ours / transformers.

{table}

Target (batch 1: >= {TARGET:.1f}x transformers' tokens/s): {", ".join(targets) or "batch 1 not measured"}."""
    if not args.no_write:
        common.write_section("generation", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
