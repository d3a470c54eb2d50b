"""One vision-language training step: ours against the same bridge feeding transformers' Qwen3ForCausalLM.

    python -m bench.train_step                          # Qwen3-0.6B, K=3: time at batch 4, memory at 4 and 16
    python -m bench.train_step --layers 4 --no-write    # a quick look
    python -m bench.train_step --layers 4 --frozen-dtype fp32 bf16   # bf16 autocast: frozen weights in fp32 or bf16

The step is what train.py does per batch: bridge(features) -> 16 visual tokens -> decoder -> loss -> backward ->
clip the gradient norm -> fused AdamW. Features are random pooled ViT-B/16 features (768 numbers per image, as the
feature cache would hold); captions are random token ids of Flickr30k's length (15-20 tokens + end-of-text) after the
prompt "Caption:" (2 tokens in Qwen3's tokenizer), right-padded. Three variants, with the same weights, bridge
initialisation, batch and frozen/trainable split (bridge + top K blocks train; embeddings, head and lower blocks are
frozen):

- transformers: `VisionLanguageModel`'s bridge feeding `transformers.Qwen3ForCausalLM(inputs_embeds=...,
  attention_mask=..., labels=...)`: logits at every position, the usual full-vocabulary cross-entropy
  (labels -100 on visual, prompt and padding positions).
- ours, plain loss: our decoder, logits only at the target positions, then `F.cross_entropy` (the loss before the
  chunked one; kept here as the "before" of that change).
- ours: `VisionLanguageModel.forward`: logits only at the target positions, chunked cross-entropy
  (`tiny_decoder.model.linear_cross_entropy`).

Peak memory. tracemalloc does not see torch's allocations, and PyTorch keeps no allocator statistics on the CPU, so
each variant runs one more fresh subprocess that reads the operating system's count of its resident memory
(Linux /proc): after the set-up and one warm-up step (weights loaded and touched, optimizer state created) it reads
VmRSS, resets the high-water mark (writing 5 to /proc/self/clear_refs), runs the forward and backward passes and
reads VmHWM, then the same for the optimizer step. "Forward+backward memory" is the first peak minus the resident
memory between steps: what the passes allocate (activations, the loss, gradients of the trainable weights).
glibc's malloc is told to give every block of 64 KiB or more back to the OS when freed
(MALLOC_MMAP_THRESHOLD_=65536), so resident memory follows the live tensors instead of the largest heap ever held.
Without /proc (not Linux) the peak is `resource.getrusage(RUSAGE_SELF).ru_maxrss`, which also counts loading.

`--frozen-dtype fp32 bf16` measures something else, into a section of its own: our step ("ours") under bf16 autocast,
as train.py runs it with `--precision bf16` (and on CUDA by default), with the frozen decoder weights stored in fp32
(autocast casts each matrix to bf16 on every use) and in bf16 (`VisionLanguageModel.store_frozen_in`, what train.py
does now); the same processes, interleaved, and the same memory method.

Read next: `bench/gpu.py` (the same step on a GPU: tokens/s, MFU), `training/step.py` (the real step).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from bench import common

VARIANTS = {"transformers": "transformers", "plain": "ours, plain loss", "ours": "ours (chunked loss)"}
TIME_TARGET, MEMORY_TARGET = 1.2, 0.6  # ours >= 1.2x faster, <= 0.6x the memory of the transformers-based step
PROMPT_TOKENS, CAPTION_TOKENS = 2, (15, 20)
PAD_ID = 151_643  # <|endoftext|>, the collator's pad and eos
FROZEN_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # --frozen-dtype: how the frozen weights are stored


# ---------------------------------------------------------------------------------------------------------------------
# Resident memory (Linux /proc; ru_maxrss elsewhere)
# ---------------------------------------------------------------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the peak resident memory to the current one; False where the OS cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(reset_worked: bool) -> float:
    if reset_worked and _status_kb("VmHWM") is not None:
        return _status_kb("VmHWM") / 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


# ---------------------------------------------------------------------------------------------------------------------
# One variant, in its own process
# ---------------------------------------------------------------------------------------------------------------------


def make_batch(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded [prompt][caption + eos][pad] rows, labels -100 off the caption, and pooled image features."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(CAPTION_TOKENS[0], CAPTION_TOKENS[1] + 1, (batch,), generator=g)
    width = PROMPT_TOKENS + int(lengths.max()) + 1
    input_ids = torch.full((batch, width), PAD_ID)  # [B, T]
    labels = torch.full((batch, width), -100)  # [B, T]
    for b, n in enumerate(lengths.tolist()):
        row = torch.randint(0, 151_643, (PROMPT_TOKENS + n,), generator=g).tolist() + [PAD_ID]
        input_ids[b, : len(row)] = torch.tensor(row)
        labels[b, PROMPT_TOKENS : len(row)] = torch.tensor(row[PROMPT_TOKENS:])
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": (labels != -100) | (torch.arange(width) < PROMPT_TOKENS),  # [B, T]: prompt + caption
        "features": torch.randn(batch, 768, generator=g),  # [B, 768]: ViT-B/16 pooled features
    }


def build(variant: str, path: Path, top_k: int, num_tokens: int, frozen: str = "fp32"):
    """The vision-language model of `variant`, built around our decoder or transformers', its frozen weights stored in
    `frozen` ("fp32" or "bf16"; what trains is fp32)."""
    from bridge import VisionLanguageModel, VLMConfig
    from vision.encoders import VisionEncoder

    decoder = common.load_theirs(path) if variant == "transformers" else common.load_ours(path)
    # Training reads cached features, so the encoder never runs: a parameter-less stand-in with ViT-B/16's sizes.
    encoder = VisionEncoder(
        name="vit", weights="none", preprocess=None, image_size=224, pooled_dim=768, hidden_dim=768, num_tokens=197
    )
    config = VLMConfig(encoder="vit", encoder_weights="none", num_visual_tokens=num_tokens, top_k=top_k)
    torch.manual_seed(0)  # the same bridge initialisation in every variant
    # VisionLanguageModel only needs `.model.layers`, `.model.embed_tokens` and `.config` from the decoder to build
    # the bridge and freeze everything but it and the top K blocks, so transformers' model fits as well.
    model = VisionLanguageModel(config, encoder, decoder).train()
    model.store_frozen_in(FROZEN_DTYPES[frozen])
    return model


def loss_fn(variant: str, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    ids, labels, features = batch["input_ids"], batch["labels"], batch["features"]
    if variant == "ours":
        return model(ids, labels, features=features)
    embeds = model.sequence_embeddings(ids, None, features)  # [B, N + T, d]: visual tokens, then the text's embeddings
    N = model.config.num_visual_tokens
    if variant == "plain":  # the loss before chunking: [M, vocab] logits kept for the backward pass
        keep, next_tokens = model._targets(labels)
        hidden = model.decoder.hidden_states(inputs_embeds=embeds)[:, :-1]  # [B, N + T - 1, d]
        return F.cross_entropy(model.decoder.lm_head(hidden[keep]).float(), next_tokens[keep])
    mask = F.pad(batch["attention_mask"].long(), (N, 0), value=1)  # [B, N + T]: visual tokens are real
    full_labels = F.pad(labels, (N, 0), value=-100)  # [B, N + T]: no loss on visual positions
    return model.decoder(inputs_embeds=embeds, attention_mask=mask, labels=full_labels, use_cache=False).loss


def train_step_flops(config, positions: int, rows: int, seq: int, top_k: int, batch: int) -> float:
    """Matmul FLOPs of one training step (a multiply-add counts as 2): the forward pass through every block, the
    backward pass into the inputs of every block (the gradient must reach the bridge), weight gradients of the top
    K blocks only, attention, the LM head and its input gradient at `rows` positions, and the pooled bridge."""
    d, hd, h, kv = config.hidden_size, config.head_dim, config.num_attention_heads, config.num_key_value_heads
    block = d * hd * (2 * h + 2 * kv) + 3 * d * config.intermediate_size  # weights each token meets in a block
    L = config.num_hidden_layers
    attention = 2 * 2 * h * hd * seq / 2  # QK^T and AV per token per block, causal: half the keys on average
    blocks = positions * (2 * L * block + 2 * L * block + 2 * top_k * block)  # forward, input grads, weight grads
    blocks += positions * L * attention * 3  # attention forward + backward (about twice the forward)
    head = rows * 2 * 2 * config.vocab_size * d  # logits and their input gradient
    bridge = batch * 3 * 2 * (768 * d + d * 16 * d)  # the pooled adapter, forward + both gradients
    return blocks + head + bridge


def setup(args: argparse.Namespace):
    model = build(args.child, args.path, args.top_k, args.visual_tokens, args.frozen or "fp32")
    bf16 = args.frozen is not None  # --frozen-dtype's processes run under bf16 autocast, as train.py with bf16
    groups = model.parameter_groups()
    optimizer = torch.optim.AdamW(  # as train.py builds it (fused, on the CPU too)
        [{"params": groups["bridge"], "lr": 1e-4}, {"params": groups["decoder"], "lr": 2e-5}],
        betas=(0.9, 0.95),
        fused=True,
    )
    trainable = [p for g in groups.values() for p in g]
    batch = make_batch(args.batch)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with common.autocast(torch.device("cpu"), bf16):
            loss = loss_fn(args.child, model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        return loss.item()

    return model, optimizer, batch, step


def child(args: argparse.Namespace) -> None:
    """Set up one variant, measure its step time or its memory, print one JSON line."""
    common.set_threads(args.threads)
    model, optimizer, batch, step = setup(args)
    result = {
        "variant": args.child,
        "rows": int((batch["labels"] != -100).sum()),
        "positions": int(batch["labels"].numel() + args.batch * args.visual_tokens),
        "seq": int(batch["labels"].shape[1] + args.visual_tokens),
    }
    if args.measure == "time":
        losses = [step() for _ in range(args.warmup)]
        times = common.interleaved({"step": lambda: losses.append(step())}, args.steps, warmup=0)["step"]
        result.update(times=times, first_loss=losses[0])
    else:
        with torch.no_grad():  # touch every weight: transformers maps the file and reads pages on first use
            sum(float(p.float().sum()) for p in model.parameters())
        result["first_loss"] = step()  # creates the optimizer's state
        optimizer.zero_grad(set_to_none=True)
        result["between_mb"] = (_status_kb("VmRSS") or 0) / 1024  # weights + optimizer state
        # The step again, in two phases: forward+backward (where the loss matters), then clipping + AdamW.
        reset_worked = reset_peak()
        with common.autocast(torch.device("cpu"), args.frozen is not None):
            loss = loss_fn(args.child, model, batch)
        loss.backward()
        forward_backward = peak_mb(reset_worked)
        reset_peak()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        result["peak_mb"] = max(forward_backward, peak_mb(reset_worked))
        result["fwd_bwd_mb"] = forward_backward - result["between_mb"] if reset_worked else None
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# The parent: interleaved subprocesses, the table, BENCHMARKS.md
# ---------------------------------------------------------------------------------------------------------------------


def config_params_mb(config) -> float:
    """fp32 megabytes of the decoder's weights (tied head counted once)."""
    from tiny_decoder import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    return sum(p.numel() for p in model.parameters()) * 4 / 2**20


def run_child(
    variant: str, measure: str, path: Path, args: argparse.Namespace, batch: int, frozen: str | None = None
) -> dict:
    """One fresh process of `variant`; with `frozen` ("fp32" or "bf16"), under bf16 autocast, its frozen weights
    stored in that dtype."""
    cmd = [sys.executable, "-m", "bench.train_step", "--child", variant, "--measure", measure, "--path", str(path)]
    cmd += ["--frozen", frozen] if frozen else []
    cmd += ["--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--threads", str(args.threads), "--top-k", str(args.top_k), "--visual-tokens", str(args.visual_tokens)]
    env = dict(os.environ)
    if measure == "memory":
        # glibc keeps freed blocks below its (growing) mmap threshold for reuse, so a process's resident memory
        # would show the largest memory it ever held, not what is alive. Fixing the threshold at 64 KiB makes every
        # tensor of 64 KiB or more its own mapping, returned to the OS when freed: resident memory then tracks the
        # live tensors. (It slows allocation, which is why timing runs in other processes.)
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{variant} ({measure}) failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def adamw_step_times(config, top_k: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per AdamW step over the trainable parameters (bridge + top K blocks): the for-loop implementation
    (train.py's on the CPU before this benchmark) against the fused one (CPU support since torch 2.4), which
    train.py now uses on the CPU as well."""
    from bridge.adapters import PooledAdapter
    from tiny_decoder.model import Qwen3DecoderLayer

    torch.manual_seed(0)
    modules = [PooledAdapter(768, config.hidden_size, 16)] + [Qwen3DecoderLayer(config, i) for i in range(top_k)]
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {
        "for-loop": torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95)),
        "fused": torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), fused=True),
    }
    times = common.interleaved({name: opt.step for name, opt in optimizers.items()}, repeats, warmup=1)
    times["params"] = [sum(p.numel() for p in params)]
    return times


def frozen_decoder_mb(config, top_k: int) -> float:
    """fp32 megabytes of the decoder's frozen weights: all but the top K blocks (the tied head counted once)."""
    from tiny_decoder import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    top = model.model.layers[len(model.model.layers) - top_k :] if top_k else []
    trained = sum(p.numel() for block in top for p in block.parameters())
    return (sum(p.numel() for p in model.parameters()) - trained) * 4 / 2**20


def compare_frozen_dtypes(args: argparse.Namespace, config, path: Path, command: str, info: dict) -> None:
    """--frozen-dtype: our step under bf16 autocast with the frozen weights stored in each dtype. Step time: `rounds`
    fresh processes per dtype, in A B, B A, ... order; memory: one process per dtype and batch. Its own section."""
    dtypes = list(dict.fromkeys(args.frozen_dtype))
    timing: dict[str, list[dict]] = {d: [] for d in dtypes}
    for r in range(args.rounds):
        for d in dtypes if r % 2 == 0 else dtypes[::-1]:
            print(f"timing, round {r + 1}/{args.rounds}: frozen weights in {d} ...", flush=True)
            timing[d].append(run_child("ours", "time", path, args, args.batch, frozen=d))
    memory: dict[tuple[str, int], dict] = {}
    for batch in args.memory_batches:
        for d in dtypes:
            print(f"memory, batch {batch}: frozen weights in {d} ...", flush=True)
            memory[d, batch] = run_child("ours", "memory", path, args, batch, frozen=d)

    def times(d: str) -> list[float]:
        return [t for res in timing[d] for t in res["times"]]

    ref = "fp32" if "fp32" in dtypes else None
    time_rows = []
    for d in dtypes:
        speedup = f"**{common.median(times(ref)) / common.median(times(d)):.2f}x**" if ref and d != ref else "-"
        time_rows.append([f"frozen weights in {d}", common.spread(times(d)), speedup,
                          f"{timing[d][0]['first_loss']:.5f}", command])  # fmt: skip
    time_table = common.markdown_table(["store", "step s", "speed-up", "loss", "command"], time_rows)
    print(time_table)
    has_phases = all(m["fwd_bwd_mb"] is not None for m in memory.values())
    keys = ["between_mb", "peak_mb", *(["fwd_bwd_mb"] if has_phases else [])]
    memory_rows = []
    for batch in args.memory_batches:
        for d in dtypes:
            m, r = memory[d, batch], memory.get((ref, batch)) if d != ref else None
            cells = [[f"{m[k]:,.0f}", f"**{m[k] / r[k]:.2f}**" if r else "-"] for k in keys]
            memory_rows.append([f"{batch}", f"frozen weights in {d}", *(c for pair in cells for c in pair)])
    names = {"between_mb": "between steps MB", "peak_mb": "peak MB", "fwd_bwd_mb": "fwd+bwd MB"}
    headers = ["batch", "store", *(h for k in keys for h in (names[k], "ratio"))]
    memory_table = common.markdown_table(headers, memory_rows)
    print(memory_table)
    first = timing[dtypes[0]][0]
    frozen_mb = frozen_decoder_mb(config, args.top_k)
    body = f"""Run {common.today()}. Machine: {common.machine_line(info, common.machine()["load_average"])}.

Settings: {common.config_name(config)}; **bf16 autocast** on the CPU (train.py's `--precision bf16`, and its default on
CUDA); otherwise as in the section above: {args.visual_tokens} visual tokens from random pooled ViT-B/16 features, a
{PROMPT_TOKENS}-token prompt, captions of {CAPTION_TOKENS[0]}-{CAPTION_TOKENS[1]} tokens + end-of-text; the bridge and
the top K = {args.top_k} blocks train (fp32, fused AdamW, gradient clipping). The frozen weights (embeddings = tied LM
head, the lower blocks, the final norm: {frozen_mb:,.0f} MB in fp32, {frozen_mb / 2:,.0f} MB in bf16) are stored in
fp32, which autocast casts to bf16 on every use, or in bf16 (`VisionLanguageModel.store_frozen_in`, what train.py does
under bf16 autocast).

Step time at batch {args.batch} ({first["positions"]} positions, {first["rows"]} labelled): each store ran in
{args.rounds} fresh processes (interleaved), {args.warmup} warm-up + {args.steps} timed steps each; median (min-max)
over all timed steps; speed-up = fp32 store's median / this one's. The losses differ by the roundings of the
embeddings, the frozen norm gains and the residual stream to bf16 (tests/test_bf16_storage.py bounds them).

{time_table}

Memory (the method of the section above): between steps MB = resident memory between steps (weights, optimizer
state, the process); peak MB = the peak during one step; fwd+bwd MB = the peak of the forward and backward passes
minus the memory between steps. Ratios = this store / the fp32 store.

{memory_table}"""
    if not args.no_write:
        common.write_section("train_step_frozen", body)


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument("--batch", type=int, default=4, help="batch of the timed steps")
    parser.add_argument("--memory-batches", type=int, nargs="+", default=[4, 16], help="batches of the memory runs")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="timing processes per variant, interleaved")
    parser.add_argument("--top-k", type=int, default=3, help="decoder blocks that train")
    parser.add_argument("--visual-tokens", type=int, default=16, help="visual tokens the bridge prepends")
    parser.add_argument(
        "--layers", type=int, default=None, help="fewer blocks than Qwen3-0.6B's 28, for quick runs (default: 28)"
    )
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="the training steps compared"
    )
    parser.add_argument(
        "--frozen-dtype",
        nargs="+",
        choices=list(FROZEN_DTYPES),
        default=None,
        help="instead: our step under bf16 autocast with the frozen weights stored in each of these dtypes, "
        "interleaved (a section of its own; default: none, the variants)",
    )
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--frozen", choices=list(FROZEN_DTYPES), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    common.add_common_args(parser, repeats=None)
    return parser


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"batch": 1, "memory_batches": 1, "steps": 1, "rounds": 1, "top_k": 0, "visual_tokens": 1,
                "layers": 1, "threads": 1, "warmup": 0}  # fmt: skip
    args = common.parse_args(parser, argv, minimums)
    if args.child:
        child(args)
        return 0
    common.set_threads(args.threads)
    info = common.machine()
    config = common.decoder_config("0.6b", args.layers)
    path = common.random_checkpoint(config, args.work_dir)
    command = f"`{common.command_line('bench.train_step', argv)}`"
    if args.frozen_dtype:
        compare_frozen_dtypes(args, config, path, command, info)
        return 0
    ref = "transformers" if "transformers" in args.variants else None

    # Step time: `rounds` fresh processes per variant, in A B C, C B A, ... order.
    timing: dict[str, list[dict]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        for variant in args.variants if r % 2 == 0 else args.variants[::-1]:
            print(f"timing, round {r + 1}/{args.rounds}: {VARIANTS[variant]} ...", flush=True)
            timing[variant].append(run_child(variant, "time", path, args, args.batch))

    def times(v: str) -> list[float]:
        return [t for res in timing[v] for t in res["times"]]

    time_rows = []
    for v in args.variants:
        speedup = f"**{common.median(times(ref)) / common.median(times(v)):.2f}x**" if ref and v != ref else "-"
        loss = f"{timing[v][0]['first_loss']:.5f}"
        time_rows.append([VARIANTS[v], common.spread(times(v)), speedup, loss, command])
    time_table = common.markdown_table(["variant", "step s", "speed-up", "loss", "command"], time_rows)
    print(time_table)

    # Memory: one process per variant and batch.
    memory: dict[tuple[str, int], dict] = {}
    for batch in args.memory_batches:
        for variant in args.variants:
            print(f"memory, batch {batch}: {VARIANTS[variant]} ...", flush=True)
            memory[variant, batch] = run_child(variant, "memory", path, args, batch)
    has_phases = all(m["fwd_bwd_mb"] is not None for m in memory.values())
    memory_rows = []
    for batch in args.memory_batches:
        for v in args.variants:
            m, r = memory[v, batch], memory.get((ref, batch)) if ref else None
            peak_ratio = f"{m['peak_mb'] / r['peak_mb']:.2f}" if r and v != ref else "-"
            fb, fb_ratio = "-", "-"
            if has_phases:
                fb = f"{m['fwd_bwd_mb']:,.0f}"
                fb_ratio = f"**{m['fwd_bwd_mb'] / r['fwd_bwd_mb']:.2f}**" if r and v != ref else "-"
            positions = f"{m['positions']} / {m['rows']}"
            memory_rows.append([f"{batch}", positions, VARIANTS[v], f"{m['peak_mb']:,.0f}", peak_ratio, fb, fb_ratio])
    memory_headers = ["batch", "positions / labelled", "variant", "peak MB", "ratio", "fwd+bwd MB", "ratio"]
    memory_table = common.markdown_table(memory_headers, memory_rows)
    print(memory_table)

    print("AdamW step: for-loop vs fused ...", flush=True)
    adamw = adamw_step_times(config, args.top_k, repeats=5)
    loop, fused = adamw["for-loop"], adamw["fused"]
    adamw_table = common.markdown_table(
        ["AdamW over the trainable parameters", "s per step", "command"],
        [
            [
                f"for-loop (train.py's CPU default before), {adamw['params'][0] / 1e6:.1f}M parameters",
                common.spread(loop, fmt=".3f"),
                command,
            ],
            [
                f"fused=True (train.py now; {common.median(loop) / common.median(fused):.1f}x faster)",
                common.spread(fused, fmt=".3f"),
                command,
            ],
        ],
    )
    print(adamw_table)

    first = timing[args.variants[0]][0]
    # Matmul FLOPs: transformers' head at every position; ours at the labelled ones, without each row's last position.
    P, seq, K, B = first["positions"], first["seq"], args.top_k, args.batch
    bound = train_step_flops(config, P, P, seq, K, B) / train_step_flops(config, P - B, first["rows"], seq - 1, K, B)
    verdicts = []
    if ref and "ours" in args.variants:
        speedup = common.median(times(ref)) / common.median(times("ours"))
        verdicts.append(f"time (>= {TIME_TARGET}x faster): {common.verdict(speedup >= TIME_TARGET)} ({speedup:.2f}x)")
        for batch in args.memory_batches:
            peak = memory["ours", batch]["peak_mb"] / memory[ref, batch]["peak_mb"]
            text = f"batch {batch}: peak {common.verdict(peak <= MEMORY_TARGET)} ({peak:.2f})"
            if has_phases:
                fb = memory["ours", batch]["fwd_bwd_mb"] / memory[ref, batch]["fwd_bwd_mb"]
                text += f", forward+backward {common.verdict(fb <= MEMORY_TARGET)} ({fb:.2f})"
            verdicts.append(f"memory (<= {MEMORY_TARGET}x) at {text}")
    body = f"""Run {common.today()}. Machine: {common.machine_line(info, common.machine()["load_average"])}.

Settings: {common.config_name(config)}; fp32 on CPU; {args.visual_tokens} visual tokens from random pooled ViT-B/16
features (768), a {PROMPT_TOKENS}-token prompt, captions of {CAPTION_TOKENS[0]}-{CAPTION_TOKENS[1]} tokens +
end-of-text, right-padded; the bridge and the top K = {args.top_k} blocks train (fused AdamW as in train.py,
gradient clipping). Equal losses confirm that the variants compute the same thing.

Step time at batch {args.batch} ({first["positions"]} positions, {first["rows"]} labelled): each variant ran in
{args.rounds} fresh processes (interleaved), {args.warmup} warm-up + {args.steps} timed steps each; median (min-max)
over all timed steps; speed-up = transformers' median / this variant's.

{time_table}

Memory: one more process per variant and batch (method in `bench/train_step.py`). Peak MB = the process's peak
resident memory during one step, with the {config_params_mb(config):,.0f} MB of weights and the optimizer state;
fwd+bwd MB = the peak during the forward and backward passes minus the resident memory between steps (weights +
optimizer state): activations, the loss and the gradients of the trainable weights. The optimizer step comes after
and is the same in all variants. Ratios = this variant / transformers.

{memory_table}

Targets for ours (chunked loss) against transformers: {"; ".join(verdicts) or "not measured"}.

Counting matmul FLOPs (`train_step_flops`), the variants differ only in the LM head, which transformers applies at
all {P} positions and ours at the {first["rows"]} labelled ones, and in the last position of each row, which ours
leaves out (it predicts nothing): at batch {B} that accounts for a **{bound:.2f}x** speed-up; the rest of the step
(28 blocks forward, their input gradients back to the bridge) is the same arithmetic in both. The optimizer step is
the same in all variants; on the CPU the fused AdamW is much faster than the for-loop one train.py used there before:

{adamw_table}"""
    if not args.no_write:
        common.write_section("train_step", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
