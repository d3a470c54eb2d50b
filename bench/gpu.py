"""On a CUDA GPU: training tokens/s, MFU, the largest batch in 24 GB, one Flickr30k epoch, generation tokens/s, and
the time to score one retrieval gallery.

    python -m bench.gpu                               # on a CUDA machine (Qwen3-0.6B, K=3, bf16 autocast)
    python -m bench.gpu --device cpu --layers 4 --batch 2 --no-write   # the same code on the CPU, small, fp32

Without a CUDA GPU (and without --device) the script writes its section of BENCHMARKS.md with every row marked
"not measured". The training step is train.py's: fp32 weights, bf16 autocast, fused AdamW, the bridge and the top
K = 3 blocks train, cached pooled features (random here), captions of Flickr30k's length (15-20 tokens).

- tokens/s counts what train.py counts: the real text tokens (prompt, caption, end-of-text) plus the visual tokens.
- MFU (model FLOPs utilisation; PaLM, Chowdhery et al. 2022, https://arxiv.org/abs/2204.02311, appendix B) =
  the step's matmul FLOPs / step time / the card's dense bf16 peak. The FLOPs are counted for the work this step
  must do: forward through all blocks, the backward pass into the *inputs* of all blocks (the gradient must reach
  the bridge), weight gradients for the top K blocks only, attention, and the LM head at the labelled positions.
- The largest batch that fits on a 24 GB card: PyTorch is limited to --budget-gib of this card's memory
  (`torch.cuda.set_per_process_memory_fraction`), and batches are tried, doubling then bisecting, until a step runs
  out of memory. 24 GiB minus ~1 GiB for the CUDA context by default.
- One Flickr30k epoch: 155,000 captions (the dataset has 31,783 images x 5 captions; Karpathy's training split
  keeps 145,000 of them) at the measured samples/s of the largest fitting batch.
- Generation: ours and transformers' `generate`, greedy, bf16 weights, 32-token prompts + 64 new tokens.
- Retrieval: the evaluation scores every (image, caption) pair of a gallery of G images (default 100) and
  their 5G captions by the caption's mean log-likelihood (`evaluation.evaluate.likelihood_scores`, bf16 autocast).
  Timed on one gallery of random pooled features and Flickr30k-length captions (random everyday words, tokenised
  with Qwen3's tokenizer: `--tokenizer` takes the hub id or a local folder holding `tokenizer.json`), every caption
  attending to its image's shared prefix, with the FLOPs of `bench.retrieval.retrieval_flops` and the fraction of
  the bf16 peak they reach. (The path that copied the prefix into every pair's row, timed here on 2026-11-26, was
  removed after bench/retrieval.py compared the two; it still runs at commit 86b8e74.)

Read next: `bench/retrieval.py` (the retrieval FLOPs it reuses), `BENCHMARKS.md` (the results).
"""

from __future__ import annotations

import argparse
import gc

import torch

from bench import common
from bench.common import autocast, bf16_peak_tflops, flickr_like_captions
from bench.retrieval import caption_token_lengths, retrieval_flops
from bench.train_step import build, loss_fn, make_batch, train_step_flops
from data import CAPTION_PROMPT
from data.batches import encode_prompts
from evaluation.evaluate import RETRIEVAL_PAIRS_PER_FORWARD, likelihood_scores
from weights_loader import DEFAULT_REPO, load_tokenizer

EPOCH_CAPTIONS = 155_000
NOT_MEASURED = "not measured: no GPU in this session"


def make_step(variant: str, model, optimizer, batch: dict, device: torch.device, bf16: bool):
    trainable = [p for g in model.parameter_groups().values() for p in g]

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, bf16):
            loss = loss_fn(variant, model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return loss

    return step


def setup(variant: str, path, device: torch.device, top_k: int, compile_blocks: bool):
    model = build(variant, path, top_k, 16).to(device)
    if compile_blocks:
        for block in model.decoder.model.layers:
            block.compile(dynamic=True)  # captions vary in length: one graph for all of them
    groups = model.parameter_groups()
    optimizer = torch.optim.AdamW(
        [{"params": groups["bridge"], "lr": 1e-4}, {"params": groups["decoder"], "lr": 2e-5}],
        betas=(0.9, 0.95),
        fused=device.type in ("cuda", "cpu"),  # as train.py
    )
    return model, optimizer


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def fits(step_for_batch, batch_size: int) -> bool:
    """Does a training step at this batch size run within the memory limit?"""
    try:
        step = step_for_batch(batch_size)
        step()
        step()  # the second step also holds the optimizer's state
        torch.cuda.synchronize()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def largest_batch(step_for_batch, start: int = 8, limit: int = 4096) -> int:
    """Doubling until a batch does not fit, then bisecting between the last fit and the first failure."""
    if not fits(step_for_batch, 1):
        return 0
    good, bad = 1, None
    b = start
    while b <= limit:
        if fits(step_for_batch, b):
            good, b = b, b * 2
        else:
            bad = b
            break
    if bad is None:
        return good
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(step_for_batch, mid) else (good, mid)
    return good


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--device", default=None, help="default: cuda when available, else only a 'not measured' section is written"
    )
    parser.add_argument("--batch", type=int, default=64, help="batch for tokens/s, MFU and the comparison")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--top-k", type=int, default=3, help="decoder blocks that train")
    parser.add_argument("--layers", type=int, default=None, help="fewer blocks, for smoke tests (default: 28)")
    parser.add_argument("--budget-gib", type=float, default=23.0, help="memory of a '24 GB' card PyTorch may use")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, for MFU (default: from its name)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder block (CUDA only)")
    parser.add_argument("--skip-max-batch", action="store_true", help="skip the search for the largest batch")
    parser.add_argument("--gallery", type=int, default=100, help="images in the timed retrieval gallery (0: skip)")
    parser.add_argument(
        "--pairs-per-forward",
        type=int,
        default=RETRIEVAL_PAIRS_PER_FORWARD,
        help="(image, caption) pairs per forward pass in the retrieval row (default: the evaluation's)",
    )
    parser.add_argument(
        "--tokenizer", default=DEFAULT_REPO, help="hub id or folder with Qwen3's tokenizer.json (retrieval row)"
    )
    common.add_common_args(parser, repeats=3)
    return parser


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"batch": 1, "steps": 1, "top_k": 0, "layers": 1, "gallery": 0, "pairs_per_forward": 1, "threads": 1,
                "repeats": 1, "warmup": 0}  # fmt: skip
    args = common.parse_args(parser, argv, minimums, positive=("budget_gib", "peak_tflops"))
    if args.compile and (args.device or "cuda").split(":")[0] != "cuda":
        parser.error("--compile is for CUDA only; drop it, or use --device cuda")
    if args.device is None and not torch.cuda.is_available():
        return write_not_measured(args)
    device = torch.device(args.device or "cuda")
    common.set_threads(args.threads)
    info = common.machine(device)
    config = common.decoder_config("0.6b", args.layers)
    path = common.random_checkpoint(config, args.work_dir)
    command = f"`{common.command_line('bench.gpu', argv)}`"
    rows = []

    # 1. Training: ours against transformers at --batch: step time, tokens/s, peak memory; MFU for ours.
    batch = to_device(make_batch(args.batch), device)
    tokens = int(batch["attention_mask"].sum()) + args.batch * 16  # as train.py counts them
    rows_labelled = int((batch["labels"] != -100).sum())
    seq = 16 + batch["input_ids"].shape[1]
    step_times, peaks = {}, {}
    for variant in ("ours", "transformers"):
        print(f"training step, {variant}: 3 warm-up + {args.steps} timed steps ...", flush=True)
        model, optimizer = setup(variant, path, device, args.top_k, args.compile and variant == "ours")
        step = make_step(variant, model, optimizer, batch, device, bf16=device.type == "cuda")
        for _ in range(3):  # warm-up: allocations, cuBLAS heuristics, compilation
            step()
        common.synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = common.interleaved({variant: step}, args.steps, warmup=0, device=device)[variant]
        step_times[variant] = times
        peaks[variant] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        del model, optimizer, step
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ours_s, theirs_s = common.median(step_times["ours"]), common.median(step_times["transformers"])
    flops = train_step_flops(config, args.batch * seq, rows_labelled, seq, args.top_k, args.batch)
    peak = args.peak_tflops or (bf16_peak_tflops(info.get("gpu", "")) if device.type == "cuda" else None)
    mfu = f"{100 * flops / ours_s / (peak * 1e12):.1f}%" if peak else "unknown peak: pass --peak-tflops"
    memory = (
        f"{peaks['ours']:.1f} / {peaks['transformers']:.1f} GiB ({peaks['ours'] / peaks['transformers']:.2f}x)"
        if peaks["ours"]
        else "n/a on CPU"
    )
    rows += [
        [f"training tokens/s, batch {args.batch}, K={args.top_k}", f"{tokens / ours_s:,.0f}", command],
        [
            "training step: ours / transformers (speed-up)",
            f"{ours_s:.3f} s / {theirs_s:.3f} s ({theirs_s / ours_s:.2f}x)",
            command,
        ],
        ["training step peak memory: ours / transformers", memory, command],
        [f"MFU (bf16 peak {peak or '?'} TFLOP/s, {flops / 1e12:.2f} TFLOP per step)", mfu, command],
    ]

    # 2. The largest batch within the budget, and one epoch at its speed.
    if device.type == "cuda" and not args.skip_max_batch:
        total = torch.cuda.get_device_properties(device).total_memory
        index = device.index if device.index is not None else torch.cuda.current_device()  # the call needs an index
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.budget_gib * 2**30 / total), index)
        model, optimizer = setup("ours", path, device, args.top_k, args.compile)

        def step_for_batch(b: int):
            return make_step("ours", model, optimizer, to_device(make_batch(b), device), device, bf16=True)

        print(f"largest batch within {args.budget_gib:g} GiB ...", flush=True)
        best = largest_batch(step_for_batch)
        step = step_for_batch(best)
        times = common.interleaved({"ours": step}, args.steps, warmup=2, device=device)["ours"]
        per_sample = common.median(times) / best
        rows += [
            [f"largest batch in {args.budget_gib:g} GiB, K={args.top_k}", f"{best}", command],
            [
                f"one Flickr30k epoch ({EPOCH_CAPTIONS:,} captions) at batch {best}",
                f"{EPOCH_CAPTIONS * per_sample / 60:.1f} min ({1 / per_sample:,.0f} samples/s)",
                command,
            ],
        ]
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        del model, optimizer, step
        gc.collect()
        torch.cuda.empty_cache()

    # 3. Generation, bf16 weights.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ours, theirs = common.load_ours(path, dtype, device), common.load_theirs(path, dtype, device)
    theirs.generation_config.eos_token_id = None
    theirs.generation_config.pad_token_id = 0
    for b in (1, 8):
        print(f"generation, batch {b} ...", flush=True)
        prompt = torch.randint(0, 151_669, (b, 32), device=device)
        times = common.interleaved(
            {
                "ours": lambda p=prompt: ours.generate(p, max_new_tokens=64, eos_token_id=[]),
                "transformers": lambda p=prompt: theirs.generate(
                    p, attention_mask=torch.ones_like(p), max_new_tokens=64, do_sample=False
                ),
            },
            args.repeats,
            args.warmup,
            device=device,
        )
        ours_tps, theirs_tps = b * 64 / common.median(times["ours"]), b * 64 / common.median(times["transformers"])
        rows.append(
            [
                f"generation tokens/s, batch {b} ({dtype}): ours / transformers",
                f"{ours_tps:,.0f} / {theirs_tps:,.0f} ({ours_tps / theirs_tps:.2f}x)",
                command,
            ]
        )

    # 4. Retrieval as the evaluation scores it: one gallery of G images and their 5 captions each, every
    #    (image, caption) pair by the caption's mean log-likelihood given the image (evaluation/evaluate.py).
    if args.gallery:
        rows += retrieval_rows(args, path, device, command, peak)

    table = common.markdown_table(["measurement", "value", "command"], rows)
    print(table)
    body = f"""Run {common.today()}. Machine: {common.machine_line(info)}.

Settings: {common.config_name(config)}; training as in train.py (fp32 weights, bf16 autocast, fused AdamW, top
K = {args.top_k} + bridge), batch {args.batch} of random pooled ViT-B/16 features with captions of 15-20 tokens
({tokens} tokens counted per step); {args.steps} timed steps after 3 warm-up steps, medians;
torch.compile: {"on (each decoder block)" if args.compile else "off"}. See `bench/gpu.py` for the MFU's FLOP count
and the batch search.

{table}"""
    if not args.no_write:
        common.write_section("gpu", body)
    return 0


# Captions of Flickr30k's length (10-16 words, ~12-18 tokens) made of everyday caption words: the retrieval row needs
# real text for the tokenizer, and its cost depends on the number and length of the captions, not on their meaning.
def retrieval_rows(args: argparse.Namespace, path, device: torch.device, command: str, peak: float | None):
    """Seconds to score one gallery of --gallery images x 5 captions each, as the evaluation does (each image's
    prefix shared by its captions); FLOPs counted by bench/retrieval.py."""
    tokenizer = load_tokenizer(args.tokenizer)
    model = build("ours", path, args.top_k, 16).to(device).eval()
    features = torch.randn(args.gallery, 768, generator=torch.Generator().manual_seed(0))  # [G, 768] pooled
    captions = flickr_like_captions(5 * args.gallery)
    bf16 = device.type == "cuda"

    def score(n_images: int) -> torch.Tensor:
        # batch 64: the evaluation scores captions in batches of max(2 x training batch, 64)
        return likelihood_scores(
            model, features[:n_images], captions, tokenizer, 64, 48, device, lambda: autocast(device, bf16),
            args.pairs_per_forward,
        )  # fmt: skip

    print(f"retrieval, one gallery of {args.gallery} images x {len(captions)} captions ...", flush=True)
    score(2)  # warm-up: allocations and kernel choices for every caption batch
    (seconds,) = common.interleaved({"score": lambda: score(args.gallery)}, 1, 0, device=device)["score"]
    prompt_len = len(encode_prompts(tokenizer.tokenizer, [CAPTION_PROMPT])[0])
    flops = retrieval_flops(model.decoder.config, caption_token_lengths(tokenizer, captions), args.gallery,
                            prompt_len, 64)  # fmt: skip
    pairs = flops.pairs
    fraction = f", {100 * flops.total / seconds / (peak * 1e12):.1f}% of the bf16 peak" if peak else ""
    return [
        [
            f"retrieval: one gallery of {args.gallery} images x {len(captions)} captions ({pairs:,} pairs, "
            f"{flops.per_pair / 1e9:.1f} GFLOP each, {args.pairs_per_forward} a forward pass, "
            f"{'bf16 autocast' if bf16 else 'fp32'})",
            f"{seconds:.1f} s ({pairs / seconds:,.0f} pairs/s, {flops.total / seconds / 1e12:.1f} TFLOP/s{fraction})",
            command,
        ]
    ]


def write_not_measured(args: argparse.Namespace) -> int:
    """The section's rows, each marked as not measured (this machine has no CUDA GPU)."""
    print(f"no CUDA GPU: {NOT_MEASURED}")
    what = [
        f"training tokens/s, batch {args.batch}, K={args.top_k}",
        "training step: ours / transformers (speed-up)",
        "training step peak memory: ours / transformers",
        "MFU against the card's bf16 peak",
        f"largest batch in {args.budget_gib:g} GiB ('24 GB' card), K={args.top_k}",
        f"one Flickr30k epoch ({EPOCH_CAPTIONS:,} captions) at that batch",
        "generation tokens/s, batch 1 and 8: ours / transformers",
        f"retrieval: one gallery of {args.gallery} images x {5 * args.gallery} captions",
    ]
    table = common.markdown_table(
        ["measurement", "value", "command"], [[w, NOT_MEASURED, "`python -m bench.gpu`"] for w in what]
    )
    print(table)
    body = f"""Checked {common.today()} on {common.cpu_name()}: `torch.cuda.is_available()` is False, so nothing
here was measured. On a CUDA machine, `python -m bench.gpu` fills this section (see its docstring for the method).

{table}"""
    if not args.no_write:
        common.write_section("gpu", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
