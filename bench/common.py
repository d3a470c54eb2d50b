"""What every benchmark shares: the machine, two models with the same weights, interleaved timing, BENCHMARKS.md.

How the timings are taken (and why):
- Warm-up first: the first call of a model pays for memory allocation, lazy initialisation and caches.
- Ours and theirs alternate, in the order A B B A A B ...: on a machine shared with other jobs the load drifts, and
  alternating spreads the drift over both models instead of charging it to whichever ran second.
- The median of the repeats is reported (one slow outlier, a neighbour's burst, does not move it), with min-max.
- `torch.set_num_threads` is fixed (default 1). On a small machine shared with other jobs, a second thread is often
  descheduled, and every parallel kernel then waits for it at its barrier: one thread is faster *and* steadier there.

References:
- PyTorch benchmarking recipe, https://pytorch.org/tutorials/recipes/recipes/benchmark.html
- transformers `Qwen3ForCausalLM`, https://huggingface.co/docs/transformers/model_doc/qwen3

Read next: `bench/decoder.py` (the simplest benchmark built on it), `BENCHMARKS.md` (the results).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/decoder.py` as well as `python -m bench.decoder`
    sys.path.insert(0, str(REPO))

from errors import OneLineArgumentParser, UserError  # noqa: E402
from runtime.env import check_folder, cpu_name  # noqa: E402
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM  # noqa: E402
from weights_loader import load_qwen3, save_qwen3  # noqa: E402

BENCHMARKS_MD = REPO / "BENCHMARKS.md"
# The generated sections, in the order they appear in BENCHMARKS.md.
SECTIONS = {
    "decoder": "Decoder forward and forward+backward",
    "generation": "Greedy generation",
    "train_step": "One vision-language training step",
    "train_step_frozen": "Frozen weights in bf16: one training step under bf16 autocast",
    "gpu": "CUDA GPU",
    "retrieval": "Retrieval scoring: FLOPs and time",
    "feature_cache": "Memory-mapped feature cache",
    "feature_extraction": "Feature extraction with DataLoader workers",
    "data_loading": "Reading COCO's annotations",
}
# The sections a script writes under another name than its own, with the command that writes them.
SECTION_COMMANDS = {"train_step_frozen": "bench.train_step --frozen-dtype fp32 bf16"}
DEFAULT_WORK_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "tiny_vlm_bench"
QWEN3_0_6B_BLOCKS = 28  # the decoder every benchmark but the demo rows measures; --layers keeps fewer


# ---------------------------------------------------------------------------------------------------------------------
# The machine and the command line
# ---------------------------------------------------------------------------------------------------------------------


def machine(device: torch.device | None = None) -> dict:
    """What produced the numbers: CPU, cores, threads, library versions, GPU, and how busy the machine was."""
    import transformers

    info = {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_line(info: dict, load_after: float | None = None) -> str:
    """One Markdown line describing the machine; it says so when other jobs were running."""
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    line = (
        f"{info['cpu']}, {info['cores']} cores, torch.set_num_threads({info['threads']}){gpu}; "
        f"torch {info['torch']}, transformers {info['transformers']}, Python {info['python']}"
    )
    loads = [x for x in (info["load_average"], load_after) if x is not None]
    if loads:
        shared = max(loads) > 0.5 * info["cores"]
        line += f". Load average (1 min) {' -> '.join(f'{x:.1f}' for x in loads)} on {info['cores']} cores"
        line += ": **the machine was shared with other jobs**, timings are noisy" if shared else ": quiet machine"
    return line


def command_line(module: str, argv: list[str] | None) -> str:
    """The command that reproduces this run, e.g. `python -m bench.decoder --repeats 5`."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def make_parser(doc: str) -> OneLineArgumentParser:
    """A benchmark's command line: a mistake is one line and exit status 2, and `--help` shows every default
    (`errors.OneLineArgumentParser`). The description is the first paragraph of the module's docstring."""
    return OneLineArgumentParser(description=doc.split("\n\n")[0])


def add_common_args(parser: argparse.ArgumentParser, repeats: int | None, warmup: int = 1) -> None:
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (see common.py)")
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per model (median reported)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls per model first")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="where the random weights are kept")
    parser.add_argument("--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone")


def parse_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    minimums: dict[str, float],
    positive: tuple[str, ...] = (),
    blocks: int = QWEN3_0_6B_BLOCKS,
) -> argparse.Namespace:
    """Parse `argv` and check every value before any work, each mistake one line and exit status 2 (`parser.error`):
    each option of `minimums` at least its minimum (every item of a list option), each of `positive` above 0 (when
    given); `--layers` at most `blocks`, the
    decoder's, and `--top-k` at most the blocks kept; `--device` one torch knows and this machine has; `--work-dir`
    a folder (or nothing yet); `--tokenizer`, when written as a path, an existing folder."""
    args = parser.parse_args(argv)
    for name, low in minimums.items():
        value = getattr(args, name)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item < low:
                parser.error(f"--{name.replace('_', '-')} {item} is invalid; expected a number >= {low:g}")
    for name in positive:
        value = getattr(args, name)
        if value is not None and not value > 0:  # NaN too
            parser.error(f"--{name.replace('_', '-')} {value} is invalid; expected a number > 0")
    layers = getattr(args, "layers", None)
    if layers is not None and layers > blocks:
        parser.error(f"--layers {layers} is invalid; the decoder has {blocks} blocks (accepted: 1..{blocks})")
    kept = layers or blocks
    if getattr(args, "top_k", None) is not None and args.top_k > kept:
        parser.error(f"--top-k {args.top_k} is invalid; the decoder keeps {kept} blocks (accepted: 0..{kept})")
    if getattr(args, "device", None) is not None:
        check_device(parser, args.device)
    work_dir = getattr(args, "work_dir", None)
    if work_dir is not None and Path(work_dir).exists() and not Path(work_dir).is_dir():
        parser.error(f"--work-dir {work_dir} is a file; expected a folder")
    tokenizer = getattr(args, "tokenizer", None)
    if tokenizer is not None and tokenizer.startswith(("/", ".", "~")):  # a folder with Qwen3's tokenizer.json
        try:
            check_folder(tokenizer, "--tokenizer", must_exist=True)
        except UserError as e:
            parser.error(str(e))
    return args


def check_device(parser: argparse.ArgumentParser, name: str) -> None:
    """`name` is a device torch knows, and CUDA is there when it names a CUDA device."""
    try:
        device = torch.device(name)
    except RuntimeError:
        parser.error(f"--device {name!r} is invalid; expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {name}: this machine has no CUDA GPU that torch can use")


def one_line_errors(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A benchmark's `main`, with a `UserError` from the code it measures (a tokenizer that cannot be fetched, a
    disk too small) printed as one line and exit status 2, as every command of the project does."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapped


def set_threads(n: int) -> None:
    torch.set_num_threads(n)  # n >= 1: checked by parse_args


# ---------------------------------------------------------------------------------------------------------------------
# The two models, with the same weights
# ---------------------------------------------------------------------------------------------------------------------


def decoder_config(size: str, layers: int | None = None) -> Qwen3Config:
    """The decoder's shape. "0.6b": Qwen3-0.6B's; "demo": the offline demo's decoder (d=128, vocab 512; see
    demo/decoders.py), where the per-token overhead of the code, not the weights' arithmetic, sets the speed.
    `layers` keeps fewer blocks, for quick runs."""
    if size == "0.6b":
        config = Qwen3Config.qwen3_0_6b()
    elif size == "demo":
        from demo.decoders import demo_config

        config = demo_config(vocab_size=512)
    else:
        raise SystemExit(f"unknown size {size!r}; expected 0.6b or demo")
    return dataclasses.replace(config, num_hidden_layers=layers) if layers else config


def config_name(config: Qwen3Config) -> str:
    """A short description: `28 layers, d=1024, vocab 151,936 (596.0M params)`."""
    d, L, V, i = config.hidden_size, config.num_hidden_layers, config.vocab_size, config.intermediate_size
    h, kv, hd = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    per_layer = d * hd * (2 * h + 2 * kv) + 3 * d * i + 2 * hd + 2 * d
    params = V * d * (1 if config.tie_word_embeddings else 2) + L * per_layer + d
    return f"{L} layers, d={d}, {h}/{kv} heads x {hd}, MLP {i}, vocab {V:,} ({params / 1e6:.1f}M params)"


def random_checkpoint(config: Qwen3Config, work_dir: Path, seed: int = 0) -> Path:
    """A directory with `config.json` + `model.safetensors` of a random decoder; written once, then reused."""
    name = f"qwen3-{config.num_hidden_layers}L-{config.hidden_size}d-{config.vocab_size}v-seed{seed}"
    path = Path(work_dir) / name
    expected = config.to_dict()
    if (path / "model.safetensors").exists() and (path / "config.json").exists():
        if json.loads((path / "config.json").read_text()) == json.loads(json.dumps(expected)):
            return path
    print(f"writing random weights ({config_name(config)}) to {path} ...", flush=True)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    tmp = path.with_name(path.name + ".tmp")  # written aside, then renamed: never a half-written checkpoint
    save_qwen3(model, tmp)
    if path.exists():  # stale: another configuration under the same name
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    tmp.replace(path)
    return path


def load_ours(path: Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Qwen3ForCausalLM:
    return load_qwen3(path, dtype=dtype, device=device).eval()


def load_theirs(path: Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """transformers' Qwen3ForCausalLM from the same directory, with PyTorch's SDPA attention (as ours uses)."""
    import transformers

    transformers.logging.set_verbosity_error()  # no generation-config notices or progress bars in the tables
    transformers.logging.disable_progress_bar()
    model = transformers.Qwen3ForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=dtype)
    assert model.config._attn_implementation == "sdpa"
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures the work and not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant: `warmup` untimed calls each, then `repeats` rounds in A B, B A, ... order."""
    device = device or torch.device("cpu")
    for fn in variants.values():
        for _ in range(warmup):
            fn()
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            variants[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".2f") -> str:
    """`median (min-max)` of a list of measurements, each multiplied by `scale`."""
    m, lo, hi = median(xs) * scale, min(xs) * scale, max(xs) * scale
    return f"{m:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


# ---------------------------------------------------------------------------------------------------------------------
# Output: a printed table and a section of BENCHMARKS.md
# ---------------------------------------------------------------------------------------------------------------------


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN generated: bench {name} -->", f"<!-- END generated: bench {name} -->"


def _skeleton() -> str:
    parts = [
        "# Benchmarks\n",
        "Our hand-written Qwen3 (`tiny_decoder/`) and training step (`bridge/vlm.py`) against transformers' "
        "`Qwen3ForCausalLM`, with the same random weights. Each section between `BEGIN/END generated` markers is "
        "rewritten by the script it names (`python -m bench.run_all` runs them all); the text outside the markers "
        "is kept.\n",
    ]
    for name, title in SECTIONS.items():
        begin, end = _markers(name)
        command = SECTION_COMMANDS.get(name, f"bench.{name}")
        parts.append(f"{begin}\n## {title}\n\nNot run yet: `python -m {command}`.\n{end}\n")
    return "\n".join(parts)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace section `name` of BENCHMARKS.md (created with every section's place on first use) with `body`."""
    text = path.read_text() if path.exists() else _skeleton()
    begin, end = _markers(name)
    block = f"{begin}\n## {SECTIONS[name]}\n\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"updated {path.relative_to(REPO) if path.is_relative_to(REPO) else path} (section {name!r})")


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, in TFLOP/s, matched against
# torch.cuda.get_device_name(); first match wins, so the more specific names come first. --peak-tflops overrides.
BF16_PEAK_TFLOPS: list[tuple[str, float | None]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10G", None),  # AWS's variant of the A10: no published figure (pass --peak-tflops)
    ("A10", 125.0),
]


def bf16_peak_tflops(device_name: str) -> float | None:
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on `device` when asked, as train.py uses it on CUDA; else no change of precision."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


CAPTION_WORDS = (
    "a an the man woman boy girl child dog people group two young old in on at with of near while red blue green "
    "white black shirt jacket hat street park beach water grass snow field road building crowd ball bike car is are "
    "running walking sitting standing playing riding holding looking jumping wearing smiling down through across"
).split()


def flickr_like_captions(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(10, 17, (n,), generator=g).tolist()
    picks = torch.randint(0, len(CAPTION_WORDS), (sum(lengths),), generator=g).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(" ".join(CAPTION_WORDS[i] for i in picks[start : start + length]).capitalize() + ".")
        start += length
    return out
