"""What fits where: the estimated peak GPU memory of training runs, and whether they fit a 24 GB or an 80 GB card.

    python -m bench.memory                              # the table of docs/memory.md (arithmetic: seconds)
    python -m bench.memory --decoder-size 4b --lora-rank 16 --top-k 1 --batch-size 8   # one choice
    python -m bench.memory --measure                    # measure a reduced model's step and compare (minutes)

The table: for Qwen3-0.6B-Base, 1.7B-Base and 4B-Base, three ways to train (the top K = 3 blocks; LoRA r = 16 on
the other blocks beside them; LoRA r = 16 with K = 1), batch sizes 2, 8 and 32, with and without
--grad-checkpointing, in bf16 autocast with the frozen weights stored in bf16; then, for comparison, K = 3 in fp32
and in bf16 autocast with fp32 frozen weights. Each cell is `training/memory.py`'s estimate of the peak; a card fits
it when 1.15 x the estimate is within its memory (`training.memory.MARGIN`). Sequences are as long as train.py
allows: 16 visual tokens + a 2-token prompt ("Caption:") + --max-target-tokens; evaluation generates greedily
(--beams 1) for twice the batch, as train.py does.

`--measure` checks the estimate where this machine can: it builds a random decoder at the chosen width with 4 blocks
and a 16,384-token vocabulary, the pooled bridge, LoRA adapters when asked (`VLMConfig.lora_rank`), the frozen weights
stored as train.py stores them (`VisionLanguageModel.store_frozen_in`), and fused AdamW, and runs train.py's step
(forward under autocast, the chunked loss, backward, gradient clipping, AdamW) in a fresh process for each case, after
the same step on a tiny model (so that the libraries' code it brings in is in the baseline). On a CPU it reads the
process's resident memory from Linux's /proc: after a warm-up step (weights and AdamW state), the peak of the forward
pass (the peak reset by writing 5 to /proc/self/clear_refs), the memory right after it (what the forward pass leaves
for the backward pass), and the peak of the rest of the step; glibc is told to return every block of 64 KiB or more
to the system when it is freed (MALLOC_MMAP_THRESHOLD_=65536), so resident memory follows the live tensors (as
`bench/train_step.py` measures). On a CUDA GPU it reads `torch.cuda.memory_allocated` and `max_memory_allocated`
instead. Each is compared with the estimate's terms (`device="cpu"`: no CUDA context). What a CPU cannot see: the
CUDA context, the caching allocator's reserved-but-unused blocks (fragmentation), and kernels that differ between
devices (the CPU's flash attention stands in for CUDA's).

Read next: `training/memory.py` (the estimate, term by term), `docs/memory.md` (the table and the measurements).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from bench import common
from errors import UserError
from tiny_decoder import Qwen3Config
from training.memory import DECODERS, Estimate, GiB, estimate_training, fits

CARDS = {"24 GB": 24 * GiB, "80 GB": 80 * GiB}  # a "24 GB" card (RTX 3090/4090, A10) has 24 GiB; A100/H100 80 GiB
CHOICES = ((3, 0), (3, 16), (1, 16))  # (top K, LoRA rank) of the table
BATCHES = (2, 8, 32)
PROMPT_TOKENS = 2  # "Caption:" in Qwen3's tokenizer
MEMORY_MD = common.REPO / "docs" / "memory.md"
# The measured cases: a reduced decoder (the chosen width, fewer blocks, a smaller vocabulary) at two batch sizes.
MEASURE_LAYERS, MEASURE_VOCAB, MEASURE_TOP_K, MEASURE_BATCHES = 4, 16_384, 1, (4, 16)
# The warm-up's decoder: every op of the real one, at a width of 64.
TINY = Qwen3Config(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16,
)  # fmt: skip


def decoder_config(size: str) -> Qwen3Config:
    return Qwen3Config.released(DECODERS[size])


def release_name(size: str) -> str:
    return DECODERS[size].split("/")[1]


# ---------------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------------


def trains(top_k: int, lora_rank: int, layers: int) -> str:
    lora = f" + LoRA r={lora_rank} on {layers - top_k}" if lora_rank else ""
    return f"top {top_k}{lora}"


def yes_no(estimate: Estimate, capacity: int) -> str:
    return "yes" if fits(estimate, capacity) else "**no**"


def table(args: argparse.Namespace, precision: str, frozen: str, choices: list[tuple[int, int]]) -> str:
    """One Markdown table: a row per decoder, choice and batch; the peak and the fit without and with
    gradient checkpointing."""
    cards = list(CARDS)
    headers = ["decoder", "trains", "trainable", "batch"]
    headers += ["peak GiB", *cards, "peak GiB, --grad-checkpointing", *cards]
    rows = []
    for size in args.decoder_size or list(DECODERS):
        config = decoder_config(size)
        for top_k, rank in choices:
            for batch in args.batch_size or BATCHES:
                row = [release_name(size), trains(top_k, rank, config.num_hidden_layers), "", str(batch)]
                for checkpointing in (False, True):
                    e = estimate(args, config, batch, top_k, rank, checkpointing, precision, frozen)
                    row[2] = f"{e.trainable / 1e6:,.1f}M"
                    row += [f"{e.peak() / GiB:.1f}", *(yes_no(e, CARDS[c]) for c in cards)]
                rows.append(row)
    return common.markdown_table(headers, rows)


def estimate(
    args: argparse.Namespace,
    config: Qwen3Config,
    batch: int,
    top_k: int,
    rank: int,
    checkpointing: bool,
    precision: str,
    frozen: str,
) -> Estimate:
    return estimate_training(
        config,
        batch_size=batch,
        num_visual_tokens=args.num_visual_tokens,
        prompt_tokens=PROMPT_TOKENS,
        max_target_tokens=args.max_target_tokens,
        top_k=top_k,
        lora_rank=rank,
        grad_checkpointing=checkpointing,
        precision=precision,
        frozen_dtype=frozen,
        beams=args.beams,
    )


def tables(args: argparse.Namespace) -> str:
    """The tables for the flags: the three choices and the comparison sets by default, or the one asked for."""
    chosen = args.top_k is not None or args.lora_rank is not None
    choices = [(args.top_k if args.top_k is not None else 3, args.lora_rank or 0)] if chosen else list(CHOICES)
    if args.precision is not None or args.frozen_dtype is not None:
        precision = args.precision or "bf16"
        frozen = args.frozen_dtype or precision
        return f"{precision}, frozen weights stored in {frozen}:\n\n" + table(args, precision, frozen, choices)
    parts = [f"bf16 autocast, frozen weights stored in bf16:\n\n{table(args, 'bf16', 'bf16', choices)}"]
    if not chosen:
        k3 = [(3, 0)]
        parts.append(f"For comparison, K = 3 in fp32:\n\n{table(args, 'fp32', 'fp32', k3)}")
        parts.append(
            "For comparison, K = 3 in bf16 autocast with the frozen weights stored in fp32 (each matrix is cast to bf16 "
            f"on use, and the copy kept for the backward pass):\n\n{table(args, 'bf16', 'fp32', k3)}"
        )
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# --measure: one case in its own process
# ---------------------------------------------------------------------------------------------------------------------


def _status_bytes(key: str) -> int:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {key} in /proc/self/status")


class Meter:
    """Memory now, and its peak since `reset()`: the CUDA allocator's counters, or the CPU process's resident set."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def now(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else _status_bytes("VmRSS")

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark VmHWM starts again from VmRSS

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated() if self.cuda else _status_bytes("VmHWM")


def measured_config(case: dict) -> Qwen3Config:
    """The decoder of the case's size at its full width, with fewer blocks and a smaller vocabulary."""
    full = decoder_config(case["size"])
    layers, vocab = case.get("layers", MEASURE_LAYERS), case.get("vocab", MEASURE_VOCAB)
    return dataclasses.replace(full, num_hidden_layers=layers, vocab_size=vocab)


def build_case(case: dict, config: Qwen3Config, device: torch.device):
    """The model of `case` around a random `config` decoder, AdamW (fused, as train.py), a batch of full-length rows,
    and its two halves of a training step: the forward pass (the loss) and the rest."""
    from bridge import VisionLanguageModel, VLMConfig
    from tiny_decoder import Qwen3ForCausalLM
    from vision.encoders import VisionEncoder

    torch.manual_seed(0)
    decoder = Qwen3ForCausalLM(config)
    # Training reads cached features, so the encoder never runs: a parameter-less stand-in with ViT-B/16's sizes.
    encoder = VisionEncoder(
        name="vit", weights="none", preprocess=None, image_size=224, pooled_dim=768, hidden_dim=768, num_tokens=197
    )
    vlm = VLMConfig(
        encoder="vit",
        encoder_weights="none",
        num_visual_tokens=case["visual"],
        top_k=case["top_k"],
        lora_rank=case["lora"],
    )
    model = VisionLanguageModel(vlm, encoder, decoder)
    if case["frozen"] == "bf16":  # as training/run.py does under bf16 autocast: what trains stays fp32
        model.store_frozen_in(torch.bfloat16)
    model.to(device).train()
    decoder.gradient_checkpointing = case["checkpointing"]
    params = [p for group in model.parameter_groups().values() for p in group]
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), fused=True)

    # Every row as long as the estimate assumes: [prompt][target of max length, end-of-text], labels on the target.
    B, P, T = case["batch"], PROMPT_TOKENS, case["target"]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (B, P + T + 1), generator=g).to(device)
    labels = ids.clone()
    labels[:, :P] = -100
    features = torch.randn(B, 768, generator=g).to(device)

    def forward() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=case["precision"] == "bf16"):
            return model(ids, labels, features=features)

    def rest(loss: torch.Tensor) -> None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return forward, rest


def measure_case(case: dict) -> dict:
    """One warm-up step, then a step's phases, in bytes above the memory before the model was built."""
    torch.set_num_threads(case["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meter = Meter(device)
    # The same step on a tiny model first: the libraries' code and buffers that the first use of autograd, autocast,
    # attention and the fused AdamW brings in (on a CPU ~150 MB of resident memory, most of it the fused AdamW's) are
    # then part of the baseline, not of the model's memory. On a GPU they are in the CUDA context.
    forward, rest = build_case(case | {"batch": 2, "target": 2, "top_k": 1, "lora": min(case["lora"], 8)}, TINY, device)
    rest(forward())
    del forward, rest
    gc.collect()
    baseline = meter.now()

    forward, rest = build_case(case, measured_config(case), device)
    rest(forward())  # warm-up: AdamW's state exists from here on
    between = meter.now()
    meter.reset()
    loss = forward()
    forward_peak, after_forward = meter.peak(), meter.now()
    meter.reset()
    rest(loss)
    step_peak = meter.peak()
    return {
        "device": str(device),
        "resident": between - baseline,
        "forward": forward_peak - between,
        "saved": after_forward - between,
        "step": step_peak - between,
        "loss": float(loss),
    }


def case_estimate(case: dict) -> Estimate:
    """The estimate of a measured case: no encoder weights (the stand-in has none) and no CUDA context (neither
    resident memory on a CPU nor the CUDA allocator's counters include one)."""
    return estimate_training(
        measured_config(case),
        batch_size=case["batch"],
        num_visual_tokens=case["visual"],
        prompt_tokens=PROMPT_TOKENS,
        max_target_tokens=case["target"],
        top_k=case["top_k"],
        lora_rank=case["lora"],
        grad_checkpointing=case["checkpointing"],
        precision=case["precision"],
        frozen_dtype=case["frozen"],
        device="cpu",
    )


def compared(case: dict, measured: dict) -> dict[str, tuple[int, int]]:
    """(measured, estimated) bytes of what can be compared: resident memory (weights, AdamW) above the baseline; the
    forward pass's peak and what it leaves for the backward pass, and the peak of the rest of the step (backward,
    clipping, AdamW), each above resident memory."""
    e = case_estimate(case)
    kept = ("activations", "autocast weight copies (bf16)", "loss: gradient of the hidden states")
    return {
        "resident": (measured["resident"], e.total("resident") - e.size("frozen encoder (fp32)")),
        "forward": (measured["forward"], e.total("forward")),
        "saved": (measured["saved"], sum(e.size(name) for name in kept)),
        "step": (measured["step"], max(e.total("backward"), e.total("optimizer"))),
    }


def run_case(case: dict) -> dict:
    """`measure_case` in a fresh process (its resident memory is its own), with glibc returning freed blocks."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "bench.memory", "--child", json.dumps(case)]
    out = subprocess.run(cmd, cwd=common.REPO, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"measuring {case} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def measure_cases(args: argparse.Namespace) -> list[dict]:
    """The cases of --measure: fp32, and bf16 with the frozen weights in fp32 and in bf16, then LoRA r = 16 in the
    last (or the --precision, --frozen-dtype and --lora-rank asked for); each without and with checkpointing, at
    each batch, for the reduced 0.6B (or each --decoder-size), K = 1 (or --top-k)."""
    if args.precision or args.frozen_dtype or args.lora_rank is not None:
        precision = args.precision or "bf16"
        kinds = [(precision, args.frozen_dtype or precision, args.lora_rank or 0)]
    else:
        kinds = [("fp32", "fp32", 0), ("bf16", "fp32", 0), ("bf16", "bf16", 0), ("bf16", "bf16", 16)]
    top_k = MEASURE_TOP_K if args.top_k is None else args.top_k
    return [
        dict(size=size, precision=precision, frozen=frozen, lora=lora, checkpointing=checkpointing, batch=batch,
             top_k=top_k, visual=args.num_visual_tokens, target=args.max_target_tokens, threads=args.threads)
        for size in args.decoder_size or ["0.6b"]
        for precision, frozen, lora in kinds
        for checkpointing in (False, True)
        for batch in args.batch_size or MEASURE_BATCHES
    ]  # fmt: skip


def measure(args: argparse.Namespace) -> str:
    """Every case, measured and estimated, as a Markdown table, and the largest disagreement."""
    if not torch.cuda.is_available() and not Path("/proc/self/clear_refs").exists():
        raise UserError("--measure on a CPU reads Linux's /proc/self/clear_refs; this system has none")
    rows, worst = [], 0.0
    for case in measure_cases(args):
        print(f"measuring {case} ...", flush=True)
        measured = run_case(case)
        cells = []
        for got, expected in compared(case, measured).values():
            worst = max(worst, abs(got / expected - 1))
            cells.append(f"{got / 2**20:,.0f} / {expected / 2**20:,.0f} ({got / expected:.2f})")
        precision = case["precision"] + (f", frozen {case['frozen']}" if case["precision"] == "bf16" else "")
        lora = f" + LoRA r={case['lora']}" if case["lora"] else ""
        layout = f"{release_name(case['size'])} width, {MEASURE_LAYERS} blocks, K={case['top_k']}{lora}"
        rows.append([measured["device"], layout, precision, "yes" if case["checkpointing"] else "no",
                     str(case["batch"]), *cells])  # fmt: skip
    headers = ["device", "decoder", "precision", "checkpointing", "batch", "resident", "forward peak",
               "kept for backward", "backward + AdamW peak"]  # fmt: skip
    return common.markdown_table(headers, rows) + f"\n\nLargest |measured / estimated - 1|: {worst:.2f}."


# ---------------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = common.make_parser(__doc__)
    parser.add_argument(
        "--decoder-size", choices=list(DECODERS), nargs="+", default=None, help="decoders to show (default: all; "
        "--measure: 0.6b, at its width with fewer blocks)"
    )  # fmt: skip
    parser.add_argument("--top-k", type=int, default=None, help="the top K blocks train (default: the table's choices)")
    parser.add_argument(
        "--lora-rank", type=int, default=None, help="LoRA rank on the blocks below the top K; 0: none (default: "
        "the table's choices)"
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, nargs="+", default=None, help="batch sizes (default: 2 8 32; --measure: 4 16)"
    )
    parser.add_argument("--max-target-tokens", type=int, default=48, help="longest target, as train.py's flag")
    parser.add_argument("--num-visual-tokens", type=int, default=16, help="visual tokens, as train.py's flag")
    parser.add_argument(
        "--precision", choices=["fp32", "bf16"], default=None, help="one precision only (default: bf16, and fp32 "
        "and bf16 with frozen fp32 weights for comparison)"
    )  # fmt: skip
    parser.add_argument(
        "--frozen-dtype", choices=["fp32", "bf16"], default=None, help="how the frozen decoder weights are stored "
        "(default: as --precision; alone, with --precision bf16)"
    )  # fmt: skip
    parser.add_argument("--beams", type=int, default=1, help="beams of evaluation's generation, as train.py's flag")
    parser.add_argument("--measure", action="store_true", help="measure a reduced model's step and compare")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads of --measure")
    parser.add_argument("--write", action="store_true", help="also write the output into docs/memory.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one measured case, as JSON
    return parser


def write_section(name: str, body: str, path: Path = MEMORY_MD) -> None:
    """Replace the text between `<!-- BEGIN generated: NAME -->` and its END marker in docs/memory.md."""
    begin, end = f"<!-- BEGIN generated: {name} -->", f"<!-- END generated: {name} -->"
    text = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if not pattern.search(text):
        raise UserError(f"{path} has no {begin} ... {end} section to write into")
    path.write_text(pattern.sub(lambda _: f"{begin}\n{body.strip()}\n{end}", text))
    print(f"updated {path.relative_to(common.REPO)} (section {name!r})")


@common.one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    minimums = {"top_k": 0, "lora_rank": 0, "batch_size": 1, "max_target_tokens": 1, "num_visual_tokens": 1,
                "beams": 1, "threads": 1}  # fmt: skip
    most = max(decoder_config(size).num_hidden_layers for size in DECODERS)  # each size's own limit: below
    args = common.parse_args(parser, argv, minimums, blocks=most)
    if args.child is not None:
        print("RESULT " + json.dumps(measure_case(json.loads(args.child))), flush=True)
        return 0
    if args.frozen_dtype == "bf16" and args.precision == "fp32":
        parser.error("--frozen-dtype bf16 is invalid with --precision fp32; frozen weights are stored in bf16 only "
                     "when training in bf16")  # fmt: skip
    for size in args.decoder_size or list(DECODERS):
        layers = decoder_config(size).num_hidden_layers
        if args.top_k is not None and args.top_k > layers:
            parser.error(f"--top-k {args.top_k} is invalid; {release_name(size)} has {layers} blocks (accepted: "
                         f"0..{layers})")  # fmt: skip
        if args.lora_rank and args.top_k is not None and args.top_k >= layers:
            parser.error(f"--lora-rank {args.lora_rank} adapts the blocks below the top K, and --top-k {args.top_k} "
                         f"trains all {layers} of {release_name(size)}: lower --top-k, or leave out --lora-rank")  # fmt: skip
    if args.measure:
        layers = MEASURE_LAYERS
        if args.top_k is not None and args.top_k > layers - (1 if args.lora_rank else 0):
            parser.error(f"--top-k {args.top_k} is invalid with --measure; its decoder has {layers} blocks")
        common.set_threads(args.threads)  # as each measured process does
        info = common.machine()
        body = measure(args)
        header = (
            f"Measured {common.today()} on {common.machine_line(info)}, by "
            f"`{common.command_line('bench.memory', argv)}`. Each cell: measured / estimated MiB (ratio)."
        )
        name = "python -m bench.memory --measure"
    else:
        body = tables(args)
        header = (
            f"Generated {common.today()} by `{common.command_line('bench.memory', argv)}` (arithmetic from the "
            "configs: the same on any machine)."
        )
        name = "python -m bench.memory"
    print(f"{header}\n\n{body}")
    if args.write:
        write_section(name, f"{header}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
