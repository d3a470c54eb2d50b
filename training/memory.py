"""What fits where: the GPU memory a training run needs, term by term, from the shapes of the model.

A run holds some memory for its whole length, and more at four moments; its peak is the resident memory plus the
largest of the four:

    resident     CUDA context; weights by dtype (frozen decoder, trainable blocks, bridge, LoRA adapters, the frozen
                 encoder); AdamW's two fp32 moments per trainable parameter
    forward      at the end of a step's forward pass: activations saved for the backward pass, autocast's bf16 copies
                 of fp32 weights, the chunked loss's buffers
    backward     activations and copies as the backward pass frees them, gradients as it makes them, its working set
    optimizer    every gradient at once (the bridge's come last; clipping and AdamW work in place)
    evaluation   generation between epochs: the KV cache (x beams), the logits, the LM head cast to bf16

Every number comes from the config (`Qwen3Config`, the bridge's sizes) and the run's choices (batch, sequence
length, top K, LoRA, gradient checkpointing, precision, the frozen weights' dtype); nothing is measured here.
`bench/memory.py --measure` measures the same step and compares, term by term (docs/memory.md has the numbers).

**Activations are derived from what autograd saves**, op by op, in `tiny_decoder/model.py` (`block_saved_bytes`).
The bridge trains, so its gradient flows back through *every* decoder block to the visual tokens: every block keeps
what its ops need to pass a gradient to their input, whatever K or LoRA is. A block whose weights also train keeps
more: the inputs of its linear layers and its norms' normalised values, which the *weight* gradients need. (PyTorch
saves an op's input only when a gradient that needs it will be computed.) Under bf16 autocast every linear layer
casts its input to bf16 once per call: three projections reading one fp32 tensor make three bf16 copies.

Gradient checkpointing (`--grad-checkpointing`) keeps only each block's input and recomputes the block in the
backward pass, one at a time: activations become L x [tokens, d], plus one block's while it is recomputed.

Assumptions (stated, and checked against measurement where a CPU can see them, `bench/memory.py --measure`):
- Attention runs as a fused kernel (flash or memory-efficient SDPA) that keeps q, k, v, the output and one fp32
  log-sum-exp per query and head, never the [T, T] weights (the CPU's flash kernel does exactly this with GQA).
- Padding: every row is as long as the longest allowed, N visual + prompt + max target tokens (an upper bound).
- LoRA adapters (on the lower L - K blocks) are `tiny_decoder/lora.py`'s: base(x) + scale * B(A(x)), fp32, no
  dropout. Each saves its input (under autocast, a bf16 copy of its own when x is fp32) and its r-wide middle.
- The residual stream has the dtype of the token embeddings (`VisionLanguageModel.sequence_embeddings` casts the
  visual tokens to it): fp32 while frozen weights are stored in fp32, bf16 when they are stored in bf16.
- The CUDA context (driver, kernels, cuBLAS) is outside PyTorch's allocator: about 300 MB with lazy module loading
  (CUDA >= 11.7) and over 1 GB before it (pytorch/pytorch#107667; 200-700 MB in #28113). `CUDA_CONTEXT` takes
  1 GiB, as `bench/gpu.py` leaves 1 GiB of a 24 GiB card for it.

Not estimated: evaluation's retrieval and likelihood passes (no gradients: one block's working set at a time), the
CPU process's own memory (imports, the allocator: `rehearse/checks.py` estimates resident memory on a CPU), and
DistributedDataParallel's gradient buckets (one more copy of the trainable gradients per process).

Use: `estimate_training(Qwen3Config.released("Qwen/Qwen3-4B-Base"), batch_size=8, lora_rank=16)` returns an
`Estimate`; `fits(estimate, 24 * GiB)` says whether it fits a 24 GiB card with `MARGIN` to spare; `estimate.describe()`
is one line.

Read next: `bench/memory.py` (the table of what fits where, and `--measure`), `docs/memory.md` (the numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tiny_decoder import Qwen3Config
from tiny_decoder.lora import TARGETS, layer_shapes

GiB = 2**30
FP32, BF16 = 4, 2  # bytes per value
CUDA_CONTEXT = 1 * GiB
MARGIN = 1.15  # a configuration fits when 1.15 x its estimated peak is within the card's memory (as rehearse/checks.py)
ADAMW_MOMENTS = 2  # exp_avg and exp_avg_sq, fp32, one each per trainable parameter

# The decoder sizes the table shows, by the names of their releases (tiny_decoder/config.py: `Qwen3Config.released`).
DECODERS = {"0.6b": "Qwen/Qwen3-0.6B-Base", "1.7b": "Qwen/Qwen3-1.7B-Base", "4b": "Qwen/Qwen3-4B-Base"}

# The frozen encoders: parameters as built (timm's ViT-B/16 without its classifier; open_clip's ViT-B/32 image tower,
# counted from the models), the width of each view, and the tokens of the "hidden" view (CLS + patches).
ENCODERS = {
    "vit": dict(parameters=85_798_656, pooled_dim=768, hidden_dim=768, tokens=197),
    "clip": dict(parameters=87_849_216, pooled_dim=512, hidden_dim=768, tokens=50),
}

LORA_TARGETS = TARGETS  # every linear layer of a block (tiny_decoder/lora.py)
PRECISIONS, DTYPES = ("fp32", "bf16"), {"fp32": FP32, "bf16": BF16}


# ---------------------------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------------------------


def projections(config: Qwen3Config) -> dict[str, tuple[int, int]]:
    """Each linear layer of a block: name -> (in_features, out_features), as `tiny_decoder/model.py` builds them."""
    return layer_shapes(config)


def block_matrix_parameters(config: Qwen3Config) -> int:
    """The seven matrices of one block (what autocast casts to bf16)."""
    return sum(a * b for a, b in projections(config).values())


def block_parameters(config: Qwen3Config) -> int:
    """One block: its matrices, two RMSNorms of width d and the QK-norms of width head_dim."""
    return block_matrix_parameters(config) + 2 * config.hidden_size + 2 * config.head_dim


def decoder_parameters(config: Qwen3Config) -> int:
    """Embedding (the tied head counted once), the blocks, the final norm; an untied head on top."""
    embedding = config.vocab_size * config.hidden_size
    head = 0 if config.tie_word_embeddings else embedding
    return embedding + head + config.num_hidden_layers * block_parameters(config) + config.hidden_size


def lora_parameters(config: Qwen3Config, rank: int, targets: Sequence[str], blocks: int) -> int:
    """A (rank x in) and B (out x rank) for each target of each adapted block."""
    shapes = projections(config)
    return blocks * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)


@dataclass(frozen=True)
class BridgeSizes:
    """The bridge's shape (`bridge/adapters.py`): its view of the encoder, the encoder's width, the MLP's width
    (None: the decoder's) and the visual tokens it makes."""

    view: str = "pooled"
    in_dim: int = 768
    hidden_dim: int | None = None
    num_tokens: int = 16
    encoder_tokens: int = 197  # the hidden view's input tokens (CLS + patches), pooled to num_tokens

    def outputs(self, width: int) -> int:
        """fc2's outputs: all N tokens at once for the pooled view (N x d), one token's for hidden (d)."""
        return self.num_tokens * width if self.view == "pooled" else width

    def matrices(self, width: int) -> tuple[int, int]:
        """fc1 (in -> h) and fc2 (h -> outputs)."""
        h = self.hidden_dim or width
        return self.in_dim * h, h * self.outputs(width)

    def parameters(self, width: int) -> int:
        """The two matrices, their biases (h and outputs), and the output norm's gain (d)."""
        h = self.hidden_dim or width
        return sum(self.matrices(width)) + h + self.outputs(width) + width

    def saved_bytes(self, batch: int, width: int, act: int) -> int:
        """What the bridge's forward keeps for its backward: the batch's cached features (fp32) and, under autocast,
        fc1's bf16 copy of them; GELU's input and fc2's input (h each); the output RMSNorm's fp32 input and its
        normalised value."""
        h = self.hidden_dim or width
        rows = batch if self.view == "pooled" else batch * self.num_tokens  # the MLP runs once per image / token
        features = batch * (1 if self.view == "pooled" else self.encoder_tokens) * self.in_dim * FP32
        cast = act * self.in_dim if act != FP32 else 0
        return features + rows * (cast + 2 * act * h + (FP32 + act) * self.outputs(width))


# ---------------------------------------------------------------------------------------------------------------------
# Activations: what one block saves for the backward pass, per token
# ---------------------------------------------------------------------------------------------------------------------


def block_saved_bytes(
    config: Qwen3Config,
    *,
    autocast: bool,
    residual_bytes: int,
    norm_weight_bytes: int,
    weights_train: bool,
    lora_targets: Sequence[str] = (),
    lora_rank: int = 0,
) -> list[tuple[str, int]]:
    """Bytes one block keeps for the backward pass, per token, op by op (`Qwen3DecoderLayer.forward`).

    autocast: bf16 autocast (matmul outputs bf16) or fp32. residual_bytes: the residual stream's dtype.
    norm_weight_bytes: the dtype of this block's RMSNorm gains (fp32 when they train). weights_train: a top-K block.
    lora_targets, lora_rank: the adapted linear layers of a frozen block.
    """
    d, I, hd = config.hidden_size, config.intermediate_size, config.head_dim  # noqa: E741 (the MLP width, as in I)
    H, KV = config.num_attention_heads, config.num_key_value_heads
    act = BF16 if autocast else FP32  # what a matmul returns
    # RMSNorm returns weight * x.to(input dtype): an fp32 gain makes an fp32 output whatever the residual is.
    norm_out = max(norm_weight_bytes, residual_bytes)
    # A linear layer whose weight trains saves its input (dW = dy^T x needs x); a frozen one does not (dx = dy W needs
    # only W). All of a top block's train.
    trained = set(TARGETS) if weights_train else set()
    adapted = set(lora_targets) if lora_rank and not weights_train else set()

    def weight_inputs(names: set[str], width: int, source: int) -> int:
        """Saved inputs of the trained layers `names`, which all read one tensor of dtype `source`: autocast casts it
        once per layer (a new bf16 copy each), or they share it as it is when it is in the compute dtype already."""
        n = len(trained & names)
        return act * width * (1 if source == act else n) if n else 0

    def adapter_inputs(names: set[str], width: int, source: int, saved_already: bool = False) -> int:
        """Saved inputs of the LoRA adapters on `names` (tiny_decoder/lora.py: under autocast lora_A reads x as it
        is): as for the projections, autocast casts x once per adapter (a copy of its own) when x, of dtype `source`,
        is not in the compute dtype; otherwise they share x itself, one tensor (none for o_proj: the attention kernel
        keeps its output already)."""
        n = len(adapted & names)
        if not n:
            return 0
        if source != act:
            return act * width * n
        return 0 if saved_already else act * width

    q, trains = config.num_attention_heads * hd, weights_train
    return [
        # x * rsqrt(mean(x^2) + eps), computed in fp32: x.pow(2) and the product keep x in fp32 (a copy when x is
        # bf16, x itself when fp32), and 1/rms per token.
        ("input RMSNorm: x in fp32 and 1/rms", FP32 * d + FP32),
        ("input RMSNorm: x/rms, for its gain's gradient", residual_bytes * d if trains else 0),
        ("q, k, v projections: their input", weight_inputs({"q_proj", "k_proj", "v_proj"}, d, norm_out)),
        ("LoRA on q, k, v: the adapters' input", adapter_inputs({"q_proj", "k_proj", "v_proj"}, d, norm_out)),
        # QK-norm: the same RMSNorm over each head's head_dim values, on queries and keys (fp32 inside).
        ("QK-norm: q and k in fp32 and 1/rms per head", FP32 * (H + KV) * hd + FP32 * (H + KV)),
        ("QK-norm: q/rms and k/rms, for its gains' gradients", act * (H + KV) * hd if trains else 0),
        # RoPE multiplies by cos and sin, which are the same tensors in every block (counted once, per model).
        # The fused attention kernel keeps its inputs q, k, v (cast to the compute dtype), its output, and one fp32
        # log-sum-exp per query and head to rebuild the softmax in the backward pass.
        ("attention: q, k, v, output, log-sum-exp", act * (2 * H + 2 * KV) * hd + FP32 * H),
        # o_proj reads the attention output reshaped, a view of the tensor the kernel already keeps: nothing more.
        ("LoRA on o_proj: the adapter's input", adapter_inputs({"o_proj"}, q, act, saved_already=True)),
        ("post-attention RMSNorm: x in fp32 and 1/rms", FP32 * d + FP32),
        ("post-attention RMSNorm: x/rms, for its gain's gradient", residual_bytes * d if trains else 0),
        ("gate, up projections: their input", weight_inputs({"gate_proj", "up_proj"}, d, norm_out)),
        ("LoRA on gate, up: the adapters' input", adapter_inputs({"gate_proj", "up_proj"}, d, norm_out)),
        # silu(gate) * up: silu's backward needs its input, the product needs both factors.
        ("SwiGLU: gate, silu(gate), up", 3 * act * I),
        ("down projection: its input silu(gate) * up", act * I if "down_proj" in trained else 0),
        ("LoRA on down_proj: the adapter's input", adapter_inputs({"down_proj"}, I, act)),
        ("LoRA: each adapter's r-wide middle, lora_B's input", act * lora_rank * len(adapted)),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------------------------------------------------


PHASES = ("forward", "backward", "optimizer", "evaluation")


@dataclass(frozen=True)
class Term:
    """One named amount of memory, and when it is held: "resident" (the whole run), or some of `PHASES`: the end of
    a step's forward pass (the loss), its backward pass, the optimizer step (every gradient, no activation left), and
    evaluation (generation between epochs)."""

    name: str
    size: int  # bytes
    phases: tuple[str, ...]


@dataclass(frozen=True)
class Estimate:
    """The named terms of one configuration, and its peak: resident + the largest of the phases."""

    terms: tuple[Term, ...]
    setting: str  # what was estimated, in words
    trainable: int  # parameters that train (AdamW's state is 2 x 4 bytes for each)

    def total(self, phase: str) -> int:
        """Bytes held during `phase` beyond the resident ones ("resident": those)."""
        return sum(t.size for t in self.terms if phase in t.phases)

    def peak(self) -> int:
        return self.total("resident") + max(self.total(phase) for phase in PHASES)

    def size(self, name: str) -> int:
        """The bytes of the term called `name` (0 when the configuration has none)."""
        return sum(t.size for t in self.terms if t.name == name)

    def describe(self) -> str:
        """One line: the setting, the peak, and what it is made of."""
        phases = ", ".join(f"{phase} {self.total(phase) / GiB:.1f}" for phase in PHASES)
        resident = self.total("resident") / GiB
        return f"{self.setting}: peak {self.peak() / GiB:.1f} GiB = resident {resident:.1f} + max({phases})"


def fits(estimate: Estimate, capacity_bytes: float) -> bool:
    """Whether the estimated peak, with `MARGIN` to spare, is within `capacity_bytes` of device memory."""
    return estimate.peak() * MARGIN <= capacity_bytes


def estimate_training(
    config: Qwen3Config,
    *,
    batch_size: int,
    num_visual_tokens: int = 16,
    prompt_tokens: int = 2,
    max_target_tokens: int = 48,
    top_k: int = 3,
    lora_rank: int = 0,
    lora_targets: Sequence[str] = LORA_TARGETS,
    grad_checkpointing: bool = False,
    precision: str = "bf16",
    frozen_dtype: str | None = None,
    encoder: str = "vit",
    view: str = "pooled",
    bridge_hidden_dim: int | None = None,
    eval_batch_size: int | None = None,
    beams: int = 1,
    max_new_tokens: int = 32,
    loss_chunk_size: int = 256,
    device: str = "cuda",
) -> Estimate:
    """The memory of a training run on one device, as named terms in bytes.

    The sequence is [N visual tokens][prompt][target, end-of-text]: the decoder reads N + prompt + max_target_tokens
    positions per row and the loss has max_target_tokens + 1 labelled rows per sample. LoRA adapts `lora_targets` of
    the L - K blocks below the top K. `frozen_dtype` is how the frozen decoder weights are stored; by default as
    train.py stores them (`runtime.devices.frozen_dtype`): bf16 under bf16 autocast, fp32 otherwise. Evaluation
    generates for `eval_batch_size` images (train.py: twice the batch) with `beams` beams. `device="cpu"` leaves out the CUDA context (what `bench/memory.py --measure` compares on a CPU).
    """
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda or cpu, got {device!r}")
    frozen_dtype = frozen_dtype or precision
    if precision not in PRECISIONS or frozen_dtype not in PRECISIONS:
        raise ValueError(f"precision and frozen_dtype must be fp32 or bf16, got {precision!r}, {frozen_dtype!r}")
    if frozen_dtype == "bf16" and precision != "bf16":
        raise ValueError("frozen weights are stored in bf16 only when training in bf16")
    L, d, V = config.num_hidden_layers, config.hidden_size, config.vocab_size
    if not 0 <= top_k <= L:
        raise ValueError(f"top_k={top_k} is not in 0..{L}")
    if encoder not in ENCODERS or view not in ("pooled", "hidden"):
        raise ValueError(f"encoder must be vit or clip and view pooled or hidden, got {encoder!r}, {view!r}")
    unknown = set(lora_targets) - set(LORA_TARGETS)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; expected some of {', '.join(LORA_TARGETS)}")
    autocast = precision == "bf16"
    act = BF16 if autocast else FP32
    frozen = DTYPES[frozen_dtype]
    residual = frozen  # the token embeddings' dtype (see the module docstring)
    lora_blocks = L - top_k if lora_rank else 0
    targets = tuple(lora_targets) if lora_rank else ()
    enc = ENCODERS[encoder]
    bridge = BridgeSizes(
        view,
        enc["pooled_dim"] if view == "pooled" else enc["hidden_dim"],
        bridge_hidden_dim,
        num_visual_tokens,
        enc["tokens"],
    )

    # --- parameters, by what trains and how each is stored -----------------------------------------------------------
    trainable_blocks = top_k * block_parameters(config)
    frozen_decoder = decoder_parameters(config) - trainable_blocks
    adapters = lora_parameters(config, lora_rank, targets, lora_blocks)
    trainable = trainable_blocks + bridge.parameters(d) + adapters

    # --- the sequence -------------------------------------------------------------------------------------------------
    positions = num_visual_tokens + prompt_tokens + max_target_tokens  # the decoder's input length per row
    tokens = batch_size * positions
    rows = batch_size * (max_target_tokens + 1)  # labelled positions: the target's tokens and its end-of-text

    # --- activations --------------------------------------------------------------------------------------------------
    def per_block(weights_train: bool, norm_weight: int) -> int:
        lora = {} if weights_train else {"lora_targets": targets, "lora_rank": lora_rank}
        parts = block_saved_bytes(
            config,
            autocast=autocast,
            residual_bytes=residual,
            norm_weight_bytes=norm_weight,
            weights_train=weights_train,
            **lora,
        )
        return tokens * sum(size for _, size in parts)

    top_block, lower_block = per_block(True, FP32), per_block(False, frozen)
    if grad_checkpointing:
        # Each block keeps only its input [tokens, d]. The backward pass recomputes the blocks one at a time, from the
        # top: while it goes back through one, that block's saved tensors exist again (below, in the backward pass).
        blocks = L * tokens * d * residual
    else:
        blocks = top_k * top_block + (L - top_k) * lower_block
    model_level = (
        2 * tokens * config.head_dim * residual  # RoPE's cos and sin, shared by every block
        + tokens * (FP32 * d + FP32)  # the final RMSNorm's fp32 input and 1/rms
        # [visual tokens][text] lives through the forward pass; with an fp32 residual the first block keeps it already
        + (batch_size * (positions + 1) * d * residual if residual != FP32 else 0)
    )
    activations = blocks + model_level + bridge.saved_bytes(batch_size, d, act)

    # --- autocast's bf16 copies of fp32 weights -----------------------------------------------------------------------
    # bf16 autocast casts an fp32 weight on each use. The copy of a weight that trains (top blocks, bridge, adapters)
    # is cached until the forward pass ends, and saved by its matmul; a frozen fp32 weight's copy is saved too, since
    # a frozen layer still passes a gradient to its input (dx = dy W). Frozen weights stored in bf16 need no copy.
    # With checkpointing a block saves nothing: its trainable weights' cached copies last until the end of the forward
    # pass, and the backward pass casts again the weights of the one block it recomputes.
    matrices = block_matrix_parameters(config)
    frozen_fp32_blocks = (L - top_k) if frozen == FP32 else 0
    top_copies = BF16 * matrices if autocast else 0  # one trainable block's copies
    lower_copies = BF16 * matrices if autocast and frozen == FP32 else 0  # one frozen block's
    if not autocast:
        copies = cached = 0
    elif grad_checkpointing:
        copies, cached = BF16 * bridge.parameters(d), BF16 * (top_k * matrices + adapters)
    else:
        copies, cached = BF16 * (matrices * (top_k + frozen_fp32_blocks) + bridge.parameters(d) + adapters), 0

    # --- the chunked loss (tiny_decoder/model.py: _ChunkedLinearCrossEntropy) ----------------------------------------
    # While it runs: hidden [tokens, d] and hidden[keep] [rows, d]; the gradient of hidden[keep], computed in the
    # forward pass and kept for the backward pass; and one chunk of m rows of logits at a time. A chunk's fp32 logits
    # [m, vocab], logsumexp's temporary of the same size, and the previous chunk's logits, still bound (as
    # `grad_logits`) until the new chunk's gradient is made: 3 x [m, vocab] in fp32 (2 when one chunk holds every
    # row). Under autocast an fp32 head is cast to bf16 for each matmul: [vocab, d] in bf16 beside the fp32 logits and
    # their bf16 gradient, in the second matmul of a chunk.
    m = min(loss_chunk_size, rows)
    head_copy = BF16 * V * d if autocast and frozen == FP32 else 0
    chunk = max(FP32 * m * V * (3 if rows > m else 2), (FP32 + BF16) * m * V + head_copy)
    loss_buffers = (tokens + rows) * d * residual + chunk
    loss_gradient = rows * d * residual

    # --- the backward pass --------------------------------------------------------------------------------------------
    # It frees each block's saved tensors (and weight copies) as it leaves the block, going down. A top block's weight
    # gradients (fp32) appear as its activations go, so they add only where they are larger; LoRA adapters' gradients
    # accumulate while the lower blocks' activations are still there. With checkpointing the gradients made so far
    # stay while the next block is recomputed: the top K blocks' gradients beside the first frozen block's activations.
    # The working set: the gradient flowing down the residual stream and into the block's input, and inside the MLP
    # the gradients of its [tokens, I] intermediates (measured: about 2 of them at once).
    G = FP32 * block_parameters(config)  # one block's weight gradients
    if grad_checkpointing:
        top = (top_k - 1) * G + max(top_block + top_copies, G) if top_k else 0
        lower = top_k * G + lower_block + lower_copies if top_k < L else 0
        during_backward = max(top, lower) + FP32 * adapters
    else:
        during_backward = top_k * max(0, G - top_block - top_copies) + FP32 * adapters
    working = tokens * (2 * FP32 * d + 2 * act * config.intermediate_size)
    # The bridge's gradients come last, when every activation is gone: at the end of the backward pass (and through
    # clipping and AdamW's step, which work in place) every gradient is there, and under autocast the last weight's
    # gradient also in bf16, before its fp32 copy is made.
    trained_matrices = [*bridge.matrices(d), *([a * b for a, b in projections(config).values()] if top_k else [])]
    last_gradient = BF16 * max(trained_matrices) if autocast else 0

    # --- evaluation: generation with a KV cache -----------------------------------------------------------------------
    eval_rows = (eval_batch_size or 2 * batch_size) * beams
    cache_length = num_visual_tokens + prompt_tokens + max_new_tokens
    kv = eval_rows * L * 2 * config.num_key_value_heads * config.head_dim * cache_length * frozen  # model.dtype
    if beams > 1:
        kv = kv * 3 // 2  # KVCache.reorder builds the new keys beside the old keys and values
    decoding_logits = eval_rows * V * (act + (3 * FP32 if beams > 1 else 0))  # + log_softmax, candidates (beams)

    R, STEP, E = ("resident",), ("forward", "backward"), ("evaluation",)
    terms = [
        Term("CUDA context", CUDA_CONTEXT if device == "cuda" else 0, R),
        Term(f"frozen decoder weights ({frozen_dtype})", frozen_decoder * frozen, R),
        Term("trainable blocks (fp32)", trainable_blocks * FP32, R),
        Term("bridge (fp32)", bridge.parameters(d) * FP32, R),
        Term("LoRA adapters (fp32)", adapters * FP32, R),
        Term("frozen encoder (fp32)", enc["parameters"] * FP32, R),
        Term("AdamW moments (fp32)", trainable * ADAMW_MOMENTS * FP32, R),
        Term("activations", activations, STEP),
        Term("autocast weight copies (bf16)", copies, STEP),
        Term("cached copies of trainable weights (bf16)", cached, ("forward",)),
        Term("loss: gradient of the hidden states", loss_gradient, ("forward",)),
        Term("loss: logits chunks and hidden states", loss_buffers, ("forward",)),
        Term(
            "gradients made so far, and the recomputed block"
            if grad_checkpointing
            else "top blocks' gradients beyond the activations they replace",
            during_backward,
            ("backward",),
        ),
        Term("backward working set", working, ("backward",)),
        Term("gradients (fp32)", trainable * FP32, ("optimizer",)),
        Term("last weight gradient in bf16", last_gradient, ("optimizer",)),
        Term("KV cache", kv, E),
        Term("decoding logits", decoding_logits, E),
        Term("LM head cast to bf16", head_copy, E),
    ]
    choice = f"K={top_k}" + (f" + LoRA r={lora_rank} on {lora_blocks} blocks" if lora_rank else "")
    setting = (
        f"{L} layers d={d}, {choice}, batch {batch_size} x {positions} positions, {precision}"
        f" (frozen {frozen_dtype}){', grad checkpointing' if grad_checkpointing else ''}"
    )
    return Estimate(tuple(t for t in terms if t.size), setting, trainable)
