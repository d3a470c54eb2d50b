"""The experiment grids: which training configurations to compare, as plain data.

A *grid* is a list of *cells*; a cell is one configuration, trained once per seed. Most cells are one training run; a
two-stage cell is two runs, the second starting from the first's checkpoint (`--init-from`). A cell changes only a few
settings of the base configuration (the offline demo's, or a real run's when `--decoder/--encoder/--data` are given).

    transfer   a frozen text-pretrained LM (K = 0) and its top K blocks trained (K = 1, 2, all), against the same
               architecture with random weights at the same K and the same number of steps: what pretraining buys.
    views      what the bridge reads: one pooled embedding or the encoder's hidden states, and how many visual tokens.
    two-stage  LLaVA's recipe (the bridge alone, then the top K blocks too) against top K from the start, at equal
               total epochs.
    what-trains  which parameters should learn, at what cost: the bridge alone, the top K blocks, LoRA adapters at
               small ranks and at the ranks whose parameter counts match top-1 and top-2, LoRA beside top-1; each at
               three learning rates, on the frozen text-pretrained LM, with what each costs the LM's other text.
    smoke      two short cells, for CI and for trying the runner.

"all" in K means every block of the decoder (3 for the demo's, 28 for Qwen3-0.6B).

References: Tsimpoukelli et al. 2021, Frozen (https://arxiv.org/abs/2106.13884): a frozen LM + a trained vision
prefix; Liu et al. 2023, LLaVA (https://arxiv.org/abs/2304.08485): stage 1 trains the projector, stage 2 more.

Read next: `experiments/runner.py` (which trains every cell and writes what it measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.vlm import check_top_k
from errors import UserError
from tiny_decoder import Qwen3Config
from tiny_decoder.lora import TARGETS
from training.memory import block_parameters, lora_parameters

PRETRAINED, RANDOM = "pretrained", "random"  # the two language models of the transfer grid
ALL = "all"  # K = every block of the decoder


@dataclass(frozen=True)
class Cell:
    """One configuration of a grid: a name, and the settings of each of its training stages (usually one)."""

    name: str
    stages: tuple[dict[str, Any], ...]  # overrides of the base TrainConfig; "lm" picks pretrained or random
    labels: dict[str, Any] = field(default_factory=dict)  # what the tables and figures group by (lm, K, view, ...)


@dataclass(frozen=True)
class GridOptions:
    """The values a grid is built from; each can be changed on the command line (`--k 0,2`, `--tokens 1,4`)."""

    k: tuple[str, ...] = ("0", "1", "2", ALL)
    views: tuple[str, ...] = ("pooled", "hidden")
    tokens: tuple[int, ...] = (1, 4, 16)
    epochs: int = 3
    stage1_epochs: int = 1  # two-stage: epochs of the bridge-only stage (the rest of --epochs trains the top K too)
    two_stage_k: str = "2"


def _k_value(k: str, depth: int) -> int:
    if k == ALL:
        return depth
    try:
        value = int(k)
    except ValueError:
        raise UserError(f"--k value {k!r} is invalid; accepted: integers 0..{depth} or 'all'") from None
    if value < 0:
        raise UserError(f"--k value {value} is invalid; accepted: integers 0..{depth} or 'all'")
    check_top_k(value, depth)  # the one check of K against the decoder's blocks
    return value


def transfer(options: GridOptions, depth: int) -> list[Cell]:
    cells = []
    for lm in (PRETRAINED, RANDOM):
        for k in options.k:
            top_k = _k_value(k, depth)
            stage = {"lm": lm, "top_k": top_k, "epochs": options.epochs}
            cells.append(Cell(f"{lm}-k{k}", (stage,), {"lm": lm, "K": top_k, "k_label": k}))
    return cells


def views(options: GridOptions, depth: int) -> list[Cell]:
    """Pooled vs hidden states, and the number of visual tokens, on the frozen pretrained LM (K = 0)."""
    cells = []
    for view in options.views:
        for n in options.tokens:
            stage = {"lm": PRETRAINED, "top_k": 0, "view": view, "num_visual_tokens": n, "epochs": options.epochs}
            cells.append(Cell(f"{view}-n{n}", (stage,), {"view": view, "tokens": n}))
    return cells


def two_stage(options: GridOptions, depth: int) -> list[Cell]:
    top_k = _k_value(options.two_stage_k, depth)
    if not 1 <= options.stage1_epochs < options.epochs:
        raise UserError(
            f"--stage1-epochs {options.stage1_epochs} is invalid with --epochs {options.epochs}; "
            f"accepted: 1..{options.epochs - 1} (stage 2 needs at least one epoch)"
        )
    stage1 = {"lm": PRETRAINED, "top_k": 0, "epochs": options.stage1_epochs}
    stage2 = {"lm": PRETRAINED, "top_k": top_k, "epochs": options.epochs - options.stage1_epochs, "init_from": "stage1"}
    one_stage = {"lm": PRETRAINED, "top_k": top_k, "epochs": options.epochs}
    return [
        Cell(f"one-stage-k{top_k}", (one_stage,), {"recipe": f"top-{top_k} from the start", "K": top_k}),
        Cell(f"two-stage-k{top_k}", (stage1, stage2), {"recipe": f"bridge first, then top-{top_k}", "K": top_k}),
    ]


# The learning rates each method of the what-trains grid is tried at: the demo's own (2e-3 for the bridge, 1e-3 for
# the top blocks) with a third below and above; LoRA's around 3e-3, since its update starts at zero and is low-rank.
LEARNING_RATES = {"lr_adapter": (1e-3, 2e-3, 4e-3), "lr_qwen": (3e-4, 1e-3, 3e-3), "lr_lora": (1e-3, 3e-3, 1e-2)}


def matching_rank(config: Qwen3Config, blocks: int) -> int:
    """The LoRA rank (on every linear layer of every block) whose adapters have about as many parameters as `blocks`
    whole blocks: rank r adds r x (in + out) per layer (the counts are training/memory.py's)."""
    per_rank = lora_parameters(config, 1, TARGETS, config.num_hidden_layers)
    return max(1, round(blocks * block_parameters(config) / per_rank))


def what_trains(options: GridOptions, config: Qwen3Config) -> list[Cell]:
    """The bridge alone (also with a lead text token), top-K for K = 1, 2 and all, LoRA at ranks 4, 8 and the two
    matching ranks, and LoRA (rank 8) beside top-1, each at three learning rates of its own parameters, on the frozen
    pretrained LM."""
    depth, width = config.num_hidden_layers, config.hidden_size
    methods: list[tuple[str, dict[str, Any], str]] = [("bridge only", {"top_k": 0}, "lr_adapter")]
    # A base LM treats position 0 as an attention sink; LLaVA and Qwen-VL always start with text, ours with a visual
    # token. The same bridge-only run with <|endoftext|> in front of the visual tokens (--lead-token):
    methods.append(("bridge only, lead token", {"top_k": 0, "lead_token": True}, "lr_adapter"))
    methods += [(f"top-{k}", {"top_k": k}, "lr_qwen") for k in (1, 2, depth)]
    ranks = sorted({4, 8, matching_rank(config, 1), matching_rank(config, 2)})
    methods += [(f"LoRA r={r}", {"top_k": 0, "lora_rank": r}, "lr_lora") for r in ranks]
    methods.append(("LoRA r=8 + top-1", {"top_k": 1, "lora_rank": 8}, "lr_lora"))
    cells = []
    for method, settings, lr_key in methods:
        for lr in LEARNING_RATES[lr_key]:
            stage = {"lm": PRETRAINED, "epochs": options.epochs, "eval_every": 0, **settings, lr_key: lr}
            rank = settings.get("lora_rank", 0)
            labels = {"method": method, "lr": lr, "lr_key": lr_key, "K": settings["top_k"], "rank": rank}
            labels["rank_share"] = round(rank / width, 3)  # r / width: how close to full rank the adapters are
            name = method.replace(", ", "-").replace(" + ", "-").replace(" ", "-").replace("=", "").lower()
            cells.append(Cell(f"{name}-lr{lr:g}", (stage,), labels))
    return cells


def smoke(options: GridOptions, depth: int) -> list[Cell]:
    """Two tiny cells (the frozen pretrained LM and the random one, K = 0), a few steps each: for CI."""
    short = {"top_k": 0, "epochs": 1, "max_steps": 4, "eval_every": 2, "eval_images": 10, "gallery_size": 5}
    return [Cell(f"{lm}-k0", ({"lm": lm, **short},), {"lm": lm, "K": 0, "k_label": "0"}) for lm in (PRETRAINED, RANDOM)]


GRIDS = {"transfer": transfer, "views": views, "two-stage": two_stage, "what-trains": what_trains, "smoke": smoke}


def build_grid(name: str, options: GridOptions, config: Qwen3Config) -> list[Cell]:
    """The cells of grid `name` for a decoder of this `config` (a one-line error for an unknown name or value)."""
    if name not in GRIDS:
        raise UserError(f"grid {name!r} is unknown; accepted: {', '.join(GRIDS)}")
    return GRIDS[name](options, config if name == "what-trains" else config.num_hidden_layers)
