"""What the rehearsal asserts, each as one `Check`: a name, the measured and the expected value, and whether they agree.

- **Checkpoint sizes.** A checkpoint holds only what trains: the bridge and the top K decoder blocks, in fp32. The
  expected tensors are derived here from the decoder's config.json and the bridge's design (`trainable_tensors`),
  not read from the model, so the file is checked name by name, shape by shape, and byte by byte (a safetensors file
  is an 8-byte length, a JSON header, then the tensors' bytes). On disk, weights + training state are compared with
  the run's own estimate of a checkpoint (`training/space.py`: 3 x the trainable bytes, weights and AdamW's two
  moments).
- **Peak memory.** The run makes no memory estimate of its own (`training/space.py` estimates disk only), so the
  estimate is written out here, term by term (`MemoryEstimate`), from the parameter counts, and the measured peak
  of each command must stay within `MEMORY_MARGIN` of it. The terms are added rather than taken phase by phase:
  memory a phase frees mostly stays with the process (the allocator keeps it), so the next phase's peak builds on it.
  This is the CPU process's view (imports, files read, the allocator keeping what was freed); the GPU view of a run,
  activations derived op by op, is `training/memory.py`, whose per-parameter bytes (dtypes, AdamW's two moments)
  both use.
- **Nothing is NaN.** Every number a run logged (`metrics.jsonl`, `metrics.json`) and every tensor it saved is finite.
- **Generation ends.** The random decoder's grammar (`rehearse/qwen3.py`) makes it write one word and then
  end-of-text (151643); generation stops only at end-of-text or at `max_new_tokens`, so an output shorter than
  `max_new_tokens` ended with end-of-text.

Read next: `rehearse/__main__.py` (the rehearsal's plan: what it builds, runs and checks).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from checkpoints.store import SUFFIXES
from training.memory import ADAMW_MOMENTS, BF16, FP32
from training.space import checkpoint_writes

from .qwen3 import release_tensors

GB = 1e9
MEMORY_MARGIN = 1.15  # a command's peak memory may exceed its estimate by at most 15%
SAFETENSORS_HEADER_LIMIT = 1 << 20  # the JSON header of a checkpoint of a few hundred tensors is kilobytes


@dataclass(frozen=True)
class Check:
    """One assertion: `measured` agrees with `expected` when `ok`."""

    name: str
    ok: bool
    measured: str
    expected: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.measured} (expected {self.expected})"


def gb(size: float) -> str:
    return f"{size / GB:.2f} GB"


# ---------------------------------------------------------------------------------------------------------------------
# What trains, from the configs
# ---------------------------------------------------------------------------------------------------------------------


def bridge_tensors(view: str, in_dim: int, width: int, num_tokens: int = 16) -> dict[str, tuple[int, ...]]:
    """The bridge's tensors (`bridge/adapters.py`), its MLP as wide as the decoder (the default). "pooled": one
    embedding -> Linear -> GELU -> Linear to all N tokens at once; "hidden": the same MLP applied to each token."""
    out = num_tokens * width if view == "pooled" else width
    return {
        "bridge.fc1.weight": (width, in_dim),
        "bridge.fc1.bias": (width,),
        "bridge.fc2.weight": (out, width),
        "bridge.fc2.bias": (out,),
        "bridge.norm.weight": (width,),
    }


def trainable_tensors(decoder_config: dict, view: str, in_dim: int, top_k: int) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint must hold: the bridge, and the top K blocks under the model's `decoder.` prefix."""
    layers = decoder_config["num_hidden_layers"]
    top = tuple(f"model.layers.{i}." for i in range(layers - top_k, layers))
    blocks = {
        f"decoder.{name}": shape for name, shape in release_tensors(decoder_config).items() if name.startswith(top)
    }
    return bridge_tensors(view, in_dim, decoder_config["hidden_size"]) | blocks


def count(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def decoder_parameters(decoder_config: dict) -> int:
    """Parameters of the decoder as loaded: the tied head is the embedding, counted once."""
    shapes = release_tensors(decoder_config)
    shapes.pop("lm_head.weight")
    return count(shapes)


def stored_parameters(path: Path, skip: tuple[str, ...] = ()) -> int:
    """Values in a safetensors file, leaving out the tensors whose names start with `skip`."""
    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith(skip))


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def safetensors_header_bytes(path: Path) -> int:
    """The bytes before the tensor data: the 8-byte header length and the JSON header."""
    with path.open("rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def checkpoint_checks(label: str, weights: Path, expected: dict[str, tuple[int, ...]]) -> list[Check]:
    """The checkpoint's tensors against `expected`: names, shapes, fp32, finite, and the file's bytes."""
    with safe_open(str(weights), framework="pt") as f:
        found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
        non_finite = [name for name in f.keys() if not torch.isfinite(f.get_tensor(name)).all()]
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])
    data, header = count(expected) * FP32, safetensors_header_bytes(weights)
    size = weights.stat().st_size
    problems = ([f"missing {missing[0]} (+{len(missing) - 1})"] if missing else []) + (
        [f"unexpected {extra[0]} (+{len(extra) - 1})"] if extra else []
    )
    problems += [f"{wrong[0]} is {found[wrong[0]]}, not {expected[wrong[0]]}"] if wrong else []
    return [
        Check(
            f"{label}: what it holds",
            not problems,
            f"{len(found)} tensors, {count(found):,} values" + (f"; {'; '.join(problems)}" if problems else ""),
            f"{len(expected)} tensors, {count(expected):,} values: the bridge and the top blocks only",
        ),
        Check(
            f"{label}: bytes",
            dtypes == {"F32"} and size - header == data and header < SAFETENSORS_HEADER_LIMIT,
            f"{size:,} B = {header:,} B header + {size - header:,} B of {'/'.join(sorted(dtypes))}",
            f"{data:,} B of F32 ({count(expected):,} x 4) + a header under {SAFETENSORS_HEADER_LIMIT:,} B",
        ),
        Check(
            f"{label}: finite",
            not non_finite,
            f"{len(non_finite)} tensors with NaN or infinity" + (f" ({non_finite[0]}, ...)" if non_finite else ""),
            "none",
        ),
    ]


def checkpoint_disk_check(label: str, weights: Path, trainable_bytes: int, keep: int) -> Check:
    """Weights + training state + sidecar on disk against `training/space.py`'s estimate of one checkpoint."""
    estimate = checkpoint_writes(weights.parent, trainable_bytes, keep).size // (keep + 1)
    files = [weights.with_suffix(suffix) for suffix in SUFFIXES]  # .safetensors, .state.pt, .json
    on_disk = sum(path.stat().st_size for path in files if path.exists())
    return Check(
        f"{label}: on disk",
        abs(on_disk - estimate) <= 0.01 * estimate,
        f"{on_disk:,} B (weights, training state, sidecar)",
        f"{estimate:,} B within 1%: training/space.py's 3 x {trainable_bytes:,} B (weights and AdamW's 2 moments)",
    )


# ---------------------------------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class MemoryEstimate:
    """A command's expected peak resident memory, as named terms in bytes."""

    terms: list[tuple[str, int]] = field(default_factory=list)

    def add(self, name: str, size: float) -> MemoryEstimate:
        self.terms.append((name, int(size)))
        return self

    def total(self) -> int:
        return sum(size for _, size in self.terms)

    def describe(self) -> str:
        return " + ".join(f"{name} {size / GB:.2f}" for name, size in self.terms)


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts of the parts of a model, and the sizes of the files they load from."""

    decoder: int  # the decoder's parameters (tied head counted once)
    head: int  # the tied head's (the embedding's) parameters: vocabulary x width
    encoder: int  # the frozen encoder as built (for CLIP with --view hidden and its retrieval reference: both towers)
    bridge: int
    trainable: int  # the bridge and the top K blocks
    decoder_file: int  # bytes of model.safetensors
    encoder_file: int  # bytes of the encoder's weights file


def loaded_weights(imports: int, sizes: ModelSizes) -> MemoryEstimate:
    """What every command that builds the model holds: the imports, the weights in fp32, and the encoder's file, which
    timm and open_clip read whole into a state dict while the model (and the decoder, loaded first) are there."""
    return (
        MemoryEstimate()
        .add("imports", imports)
        .add("decoder fp32", sizes.decoder * FP32)
        .add("encoder fp32", sizes.encoder * FP32)
        .add("bridge fp32", sizes.bridge * FP32)
        .add("encoder file read", sizes.encoder_file)
    )


def inference_memory(imports: int, sizes: ModelSizes) -> MemoryEstimate:
    """Loading a trained model and using it in fp32 (--test, caption.py on a CPU): the weights, and the decoder's
    file, whose pages stay resident while its tensors are read one by one."""
    return loaded_weights(imports, sizes).add("decoder file mapped while loading", sizes.decoder_file)


def training_memory(imports: int, sizes: ModelSizes, *, bf16: bool, processes: int) -> MemoryEstimate:
    """Training one process's share: the weights; gradients and AdamW's two moments of what trains; under bf16
    autocast, the frozen decoder stored in bf16 (`VisionLanguageModel.store_frozen_in`: cast after the fp32 load,
    whose freed pages the allocator mostly keeps, so both count), and a bf16 head in evaluation; DDP's gradient
    buckets; and writing a checkpoint (safetensors serialises the weights through a copy of their bytes). A bound:
    the trainable blocks are counted in the bf16 copy too."""
    estimate = loaded_weights(imports, sizes).add("grads+AdamW", sizes.trainable * (1 + ADAMW_MOMENTS) * FP32)
    if bf16:
        estimate.add("frozen decoder in bf16", sizes.decoder * BF16).add("bf16 head in evaluation", sizes.head * BF16)
    if processes > 1:
        estimate.add("DDP buckets", sizes.trainable * FP32)
    return estimate.add("checkpoint write", sizes.trainable * 2 * FP32)


def memory_check(label: str, peak: int, estimate: MemoryEstimate) -> Check:
    return Check(
        f"{label}: peak memory",
        peak <= MEMORY_MARGIN * estimate.total(),
        f"{gb(peak)} ({peak / estimate.total():.2f} x the estimate)",
        f"at most {MEMORY_MARGIN} x {gb(estimate.total())} = {estimate.describe()}",
    )


# ---------------------------------------------------------------------------------------------------------------------
# Numbers and text the runs wrote
# ---------------------------------------------------------------------------------------------------------------------


def numbers(value: object, where: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, with its path (`epoch_1/val.loss`)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield where, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{where}[{i}]")


def logged_numbers(run_dir: Path) -> list[tuple[str, float]]:
    """The numbers of a run's metrics.jsonl (one JSON object a line) and metrics.json (Python's json reads NaN)."""
    found = []
    jsonl = run_dir / "metrics.jsonl"
    for i, line in enumerate(jsonl.read_text().splitlines() if jsonl.exists() else []):
        found += [(f"metrics.jsonl:{i + 1} {k}", v) for k, v in numbers(json.loads(line))]
    if (run_dir / "metrics.json").exists():
        found += [(f"metrics.json {k}", v) for k, v in numbers(json.loads((run_dir / "metrics.json").read_text()))]
    return found


def finite_metrics_check(label: str, run_dir: Path, need: tuple[str, ...]) -> Check:
    """Every logged number is finite, and the keys in `need` (a loss, a metric) were logged at all."""
    found = logged_numbers(run_dir)
    bad = [k for k, v in found if not math.isfinite(v)]
    absent = [key for key in need if not any(key in k for k, _ in found)]
    return Check(
        f"{label}: logged numbers",
        bool(found) and not bad and not absent,
        f"{len(found)} numbers, {len(bad)} NaN or infinite" + (f" ({bad[0]}, ...)" if bad else "")
        + (f"; no {', '.join(absent)}" if absent else ""),
        f"all finite, including {', '.join(need)}",
    )  # fmt: skip


def generated_texts(run_dir: Path) -> list[str]:
    """The captions the last validation generated (the sample table in metrics.jsonl)."""
    texts, jsonl = [], run_dir / "metrics.jsonl"
    for line in jsonl.read_text().splitlines() if jsonl.exists() else []:
        record = json.loads(line)
        if record.get("table") == "samples":
            column = record["columns"].index("generated")
            texts = [row[column] for row in record["rows"]]
    return texts


def end_of_text_check(label: str, texts: list[str], token_count, max_new_tokens: int, word: str) -> Check:
    """Each output is shorter than `max_new_tokens`, so generation stopped at end-of-text; and it is the grammar's
    word, so the prompt, the decoder and the decoding are the ones the grammar was written for."""
    lengths = [token_count(text) for text in texts]
    return Check(
        f"{label}: generation ends with <|endoftext|> (151643)",
        bool(texts) and all(n < max_new_tokens for n in lengths) and all(t == word for t in texts),
        f"{len(texts)} outputs {sorted(set(texts))} of {sorted(set(lengths))} tokens",
        f"{word!r}, 1 token and then end-of-text, before --max-new-tokens {max_new_tokens}",
    )


def cut_targets_check(log: str, expected_cut: int, targets: int, max_target_tokens: int) -> Check:
    """The run's count of training targets longer than --max-target-tokens, against the tokenizer's own count."""
    match = re.search(r"([\d,]+) of ([\d,]+) training targets are longer than", " ".join(log.split()))
    measured = (int(match[1].replace(",", "")), int(match[2].replace(",", ""))) if match else (0, targets)
    return Check(
        "the real tokenizer: long captions",
        measured == (expected_cut, targets),
        f"the run cut {measured[0]} of {measured[1]} training targets",
        f"{expected_cut} of {targets} longer than {max_target_tokens} tokens",
    )
