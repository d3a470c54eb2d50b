"""Retrieval by likelihood: what one (image, caption) pair costs in FLOPs, and how fast the evaluation scores them.

    python -m bench.retrieval --tokenizer ../shared/qwen3-tokenizer --gallery 6 --threads 2   # Qwen3-0.6B layout
    python -m bench.retrieval --tokenizer ../shared/qwen3-tokenizer --layers 4 --gallery 6     # fewer blocks

the evaluation scores every caption of a gallery against every image by the caption's mean log-likelihood
(`evaluation.evaluate.likelihood_scores`). The row of a pair is [16 visual tokens][prompt "Caption:"][caption]; the
visual tokens and the prompt (the prefix) run once per image, and then every caption token runs through all blocks
and the full 151,936-wide LM head once per image it is scored against. That work cannot be shared between images
(every hidden state of a caption depends on its image through attention), so it is the floor:

    per caption token: 2 x (parameters of the blocks' matmuls + vocabulary x width of the head) + attention
                       = 2 x (28 x 15.7M + 151,936 x 1,024) = ~1.2 GFLOP at Qwen3-0.6B's size

`retrieval_flops` counts it for the actual caption batches (the padding included, as it is executed), plus the
prefixes. Achieved FLOP/s = FLOPs / time; the fraction of peak is against the GPU's dense bf16 peak (bench/gpu.py's
table) and, on the CPU, against the rate this run measures for one large fp32 matmul (there is no data-sheet figure
for a shared virtual machine's cores).

The path timed is the evaluation's (`VisionLanguageModel.shared_prefix_log_likelihood`): every caption attends to
its image's prefix where it is cached (`tiny_decoder/shared_prefix.py`). The path it replaced copied the prefixes'
keys and values into one KV-cache row per (image, caption) pair and ran the captions after them with an explicit
causal mask; this script timed the two side by side (BENCHMARKS.md, the run of 2026-12-01), and the copy was removed
after that run. It still runs at commit 86b8e74 (`git checkout 86b8e74`, then the same command).

Captions are Flickr30k-length (10-16 words of everyday caption words, `bench.common.flickr_like_captions`), tokenised
with Qwen3's tokenizer; features are random pooled ViT-B/16 vectors.

Read next: `tiny_decoder/shared_prefix.py` (the path it times), `BENCHMARKS.md` (the results).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from bench import common
from bench.common import autocast, bf16_peak_tflops, flickr_like_captions
from bench.train_step import build
from data import CAPTION_PROMPT
from data.batches import encode_prompts
from evaluation.evaluate import RETRIEVAL_PAIRS_PER_FORWARD, likelihood_scores
from tiny_decoder import Qwen3Config
from weights_loader import DEFAULT_REPO, load_tokenizer

NUM_VISUAL_TOKENS = 16
EVAL_CAPTION_BATCH = 64  # the evaluation scores captions in batches of max(2 x training batch, 64)
MAX_TARGET_TOKENS = 48


@dataclass(frozen=True)
class RetrievalFlops:
    """Matmul FLOPs of scoring one gallery, by part."""

    text: float  # caption positions through all blocks (projections, MLP and attention), padding included
    head: float  # the LM head at every labelled caption position
    prefix: float  # visual tokens + prompt through all blocks, once per image per caption batch
    pairs: int
    caption_tokens: int  # labelled caption tokens (caption + end-of-text) of all pairs

    @property
    def total(self) -> float:
        return self.text + self.head + self.prefix

    @property
    def per_pair(self) -> float:
        return self.total / self.pairs


def block_matmul_params(config: Qwen3Config) -> int:
    """Weights one position multiplies by in one block: q, k, v, o projections and the SwiGLU MLP."""
    d, h, kv, hd, i = (config.hidden_size, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                       config.intermediate_size)  # fmt: skip
    return d * hd * (2 * h + 2 * kv) + 3 * d * i


def retrieval_flops(
    config: Qwen3Config,
    caption_lengths: list[int],
    n_images: int,
    prompt_len: int,
    batch_size: int,
    num_visual_tokens: int = NUM_VISUAL_TOKENS,
) -> RetrievalFlops:
    """FLOPs of `likelihood_scores` for captions of `caption_lengths` tokens (caption + end-of-text) against n_images.

    The captions are batched as likelihood_scores batches them (sorted by length, `batch_size` a batch, padded to
    the batch's longest); a caption of n tokens has n labelled positions (the prompt's last one and n - 1 caption
    positions; the last token predicts nothing and is not run). Attention is counted as the shared-prefix path
    executes it. Not counted: the bridge and the prefixes' own attention (both tiny); torch's FlopCounterMode
    agrees (a test checks a tiny model).
    """
    L, d, V = config.num_hidden_layers, config.hidden_size, config.vocab_size
    heads, hd = config.num_attention_heads, config.head_dim
    block = 2 * L * block_matmul_params(config)  # per position through all blocks
    prefix_positions = num_visual_tokens + prompt_len
    text = head = prefix = 0.0
    ordered = sorted(caption_lengths)
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        S = max(batch) - 1  # caption positions run after the prefix, per row (padded)
        rows = n_images * len(batch)
        # attention: scores and weighted values, 2 x 2 x heads x head_dim per (query, key); the shared-prefix path
        # multiplies each query by the prefix and by all S keys of its own text (the causal mask is applied after)
        text += rows * (S * block + L * 4 * heads * hd * S * (prefix_positions + S))
        head += n_images * sum(batch) * 2 * V * d
        prefix += n_images * prefix_positions * block
    return RetrievalFlops(text, head, prefix, n_images * len(caption_lengths), n_images * sum(caption_lengths))


def caption_token_lengths(tokenizer, captions: list[str]) -> list[int]:
    """Tokens of each caption as scored: " caption" + end-of-text, truncated as the collator truncates."""
    ids = encode_prompts(tokenizer.tokenizer, [" " + c for c in captions])
    return [min(len(x), MAX_TARGET_TOKENS - 1) + 1 for x in ids]


def matmul_rate(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of one large fp32 matmul ([2048, 1024] x [1024, 3072], an MLP projection's shape) on this device."""
    a, b = torch.randn(2048, 1024, device=device), torch.randn(1024, 3072, device=device)
    times = common.interleaved({"mm": lambda: a @ b}, repeats, warmup=2, device=device)["mm"]
    return 2 * 2048 * 1024 * 3072 / min(times)


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--layers", type=int, default=None, help="fewer decoder blocks than Qwen3-0.6B's 28 (default: 28)"
    )
    parser.add_argument("--gallery", type=int, default=6, help="images in the gallery (5 captions each)")
    parser.add_argument(
        "--pairs-per-forward",
        type=int,
        default=RETRIEVAL_PAIRS_PER_FORWARD,
        help="(image, caption) pairs a forward pass",
    )
    parser.add_argument("--tokenizer", default=DEFAULT_REPO, help="hub id or folder with Qwen3's tokenizer.json")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="a GPU's dense bf16 peak, if not in the list (default: none)"
    )
    common.add_common_args(parser, repeats=3)
    return parser


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"layers": 1, "gallery": 1, "pairs_per_forward": 1, "threads": 1, "repeats": 1, "warmup": 0}
    args = common.parse_args(parser, argv, minimums, positive=("peak_tflops",))
    device = torch.device(args.device)
    common.set_threads(args.threads)
    info = common.machine(device)
    config = common.decoder_config("0.6b", args.layers)
    full = common.decoder_config("0.6b")
    path = common.random_checkpoint(config, args.work_dir)
    tokenizer = load_tokenizer(args.tokenizer)
    model = build("ours", path, min(3, config.num_hidden_layers), NUM_VISUAL_TOKENS).to(device).eval()
    features = torch.randn(args.gallery, 768, generator=torch.Generator().manual_seed(0))  # [G, 768] pooled
    captions = flickr_like_captions(5 * args.gallery)
    lengths = caption_token_lengths(tokenizer, captions)
    prompt_len = len(encode_prompts(tokenizer.tokenizer, [CAPTION_PROMPT])[0])
    bf16 = device.type == "cuda"

    def score() -> torch.Tensor:
        return likelihood_scores(
            model, features, captions, tokenizer, EVAL_CAPTION_BATCH, MAX_TARGET_TOKENS, device,
            lambda: autocast(device, bf16), args.pairs_per_forward,
        )  # fmt: skip

    print(f"scoring {args.gallery} images x {len(captions)} captions ...", flush=True)
    times = common.interleaved({"score": score}, args.repeats, warmup=1, device=device)["score"]
    load_after = common.machine(device)["load_average"]
    rate = matmul_rate(device)
    flops = retrieval_flops(config, lengths, args.gallery, prompt_len, EVAL_CAPTION_BATCH)
    full_flops = retrieval_flops(full, lengths, args.gallery, prompt_len, EVAL_CAPTION_BATCH)
    peak = args.peak_tflops or (bf16_peak_tflops(info.get("gpu", "")) if device.type == "cuda" else None)
    reference = f"{peak:g} TFLOP/s bf16 peak" if peak else f"this run's fp32 matmul rate, {rate / 1e9:,.0f} GFLOP/s"
    pairs = flops.pairs
    at_full_size = "; at Qwen3-0.6B's 28 blocks the same captions cost" if args.layers else "; in all"
    command = f"`{common.command_line('bench.retrieval', argv)}`"
    seconds = common.median(times)
    achieved = flops.total / seconds
    fraction = achieved / (peak * 1e12 if peak else rate)
    row = [common.spread(times), f"{pairs / seconds:,.2f}", f"{achieved / 1e9:,.1f}", f"{100 * fraction:.0f}%", command]
    table = common.markdown_table(["s per gallery", "pairs/s", "GFLOP/s", f"of {reference}", "command"], [row])
    body = f"""Run {common.today()}. Machine: {common.machine_line(info, load_after)}.

Settings: {common.config_name(config)}; {"bf16 autocast" if bf16 else "fp32"} on {device.type}; one gallery of
{args.gallery} images x {len(captions)} Flickr30k-length captions ({pairs:,} pairs; {sum(lengths) / len(lengths):.1f}
tokens a caption with its end-of-text, Qwen3's tokenizer), captions in batches of {EVAL_CAPTION_BATCH},
{args.pairs_per_forward} pairs a forward pass, as the evaluation (evaluation/evaluate.py) runs it, each caption attending to
its image's shared prefix. Times: median (min-max) of {args.repeats} repeats after one untimed call. (The path that
copied the prefix into every pair's row was timed against this one on 2026-12-01 and removed after that run; it
still runs at commit 86b8e74.)

FLOPs (`retrieval_flops`, matmuls as executed, padding included): {flops.per_pair / 1e9:.2f} GFLOP a pair at this
layout ({flops.text / flops.total:.0%} caption positions through the blocks, {flops.head / flops.total:.0%} the LM
head, {flops.prefix / flops.total:.1%} the prefixes){at_full_size}: {full_flops.per_pair / 1e9:.2f} GFLOP a pair,
{full_flops.total / full_flops.caption_tokens / 1e9:.2f} GFLOP a labelled caption token, everything included.

{table}"""
    print(body)
    if not args.no_write:
        common.write_section("retrieval", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
