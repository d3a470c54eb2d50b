"""The training configuration: one dataclass, filled from the command line, the environment, `.env` and defaults.

Precedence, highest first: command-line flag > environment variable > `.env` file > default. The environment keys
are the project one-pager's (`VISION_ENCODER`, `TOP_K`, `BATCH_SIZE`, `EPOCHS`, `LR_ADAPTER`, `LR_QWEN`, `SEED`,
`OUTPUT_DIR_MODELS`, `WANDB_ENTITY`, `WANDB_PROJECT`, `HF_TOKEN`); `.env.example` documents them.

Every value is validated here, once: a bad one ends the program with one line that names the key, the value and
what is accepted (exit status 2), never a traceback from deep inside training.

Read next: `training/preflight.py` (the checks that follow), `training/run.py` (where the settings are used).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import Field, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import hub
from checkpoints.store import DEFAULT_OUTPUT_DIR, RUN_KEYS
from data.images import check_max_bad_fraction
from data.splits import SCHEMES
from errors import OneLineArgumentParser, UserError
from evaluation.protocol import EvalSettings
from runtime.devices import DEVICES, PRECISIONS
from runtime.env import DEFAULT_CACHE_DIR, dotenv_values
from training.tracking import DEFAULT_PROJECT
from vision.encoders import ENCODER_NAMES, VIEWS

WANDB_MODES = ("auto", "online", "offline", "disabled")
SPLITS = SCHEMES  # auto | random | karpathy (data/splits.py)
# The evaluation settings that `--test` takes from the command line when typed there (`test_config`).
EVAL_KEYS = ("eval_images", "gallery_size", "max_new_tokens", "batch_size", "num_samples", "beams", "length_penalty",
             "ptb", "meteor", "spice")  # fmt: skip


@dataclass
class TrainConfig:
    """Everything a run needs. Field names match the command-line flags (`top_k` <-> `--top-k`)."""

    mode: str = "train"  # train | test | demo
    # model
    encoder: str = "vit"
    encoder_weights: str = "default"
    view: str = "pooled"
    top_k: int = 3
    num_visual_tokens: int = 16
    bridge_hidden_dim: int | None = None  # the bridge MLP's hidden width (None: the decoder's width)
    decoder: str = "Qwen/Qwen3-0.6B-Base"
    # data
    data: str = "flickr30k"
    split: str = "auto"  # karpathy when the data carries split labels, else random (data/splits.py)
    image_column: str | None = None  # a Parquet repo's image column (None: detect it)
    caption_column: str | None = None  # the caption column of a Parquet repo or an imagefolder's metadata
    tasks: str = "caption,qa"
    max_target_tokens: int = 48
    max_bad_fraction: float = 0.01  # the share of unreadable images a data set may have before loading stops
    num_workers: int = 0
    # optimisation
    epochs: int = 3
    batch_size: int = 32
    grad_accum: int = 1
    lr_adapter: float = 1e-3
    lr_qwen: float = 2e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    max_steps: int | None = None
    grad_checkpointing: bool = False
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads of PyTorch's kernels (None: PyTorch's choice)
    precision: str = "auto"
    # evaluation
    eval_images: int | None = None  # at most this many images (None: 100 validation images an epoch; all at --test)
    gallery_size: int = 100
    max_new_tokens: int = 32
    num_samples: int = 8
    beams: int = 1  # beam search for evaluation captions (1: greedy)
    length_penalty: float = 1.0  # beam score = sum of log-probs / length ** length_penalty
    ptb: bool = False  # tokenise captions with pycocoevalcap's Java PTB tokenizer for BLEU/CIDEr (needs `java`)
    meteor: bool = True  # --test also scores METEOR (a Java VM, 5-10 s to start); every epoch's validation never does
    spice: bool = False  # --test also scores SPICE (Java 8/11, CoreNLP models, 8 GB heap; probed first)
    eval_every: int = 0  # also evaluate validation every N optimizer steps (0: only at the end of each epoch)
    # output
    output_dir: str = DEFAULT_OUTPUT_DIR
    cache_dir: str = DEFAULT_CACHE_DIR
    run_name: str | None = None
    save_every: int = 0  # also checkpoint every N optimizer steps (0: at the end of each epoch only)
    keep_checkpoints: int = 2
    resume: bool | str = False  # True (--resume), "auto" (--resume auto: also a first start), False
    init_from: str | None = None
    checkpoint: str = "latest"  # for --test and --push-to-hub: a .safetensors path, hf:OWNER/NAME or "latest"
    # sharing on the Hugging Face Hub (checkpoints/share.py): upload a checkpoint instead of training
    push_to_hub: str | None = None  # OWNER/NAME of the model repo
    public: bool = False  # create the repo public (default: private)
    dry_run: bool = False  # only print what would be uploaded
    hub_decoder: str | None = None  # the hub id of a decoder trained from a local copy (recorded instead of the path)
    # tracking
    wandb: str = "auto"
    wandb_project: str = DEFAULT_PROJECT  # mlx8-w4-multimodal-transferlearning (training/tracking.py)
    wandb_entity: str | None = None
    wandb_group: str | None = None  # W&B group (the experiment runner puts each grid's runs in one group)
    log_every: int = 1  # send the training metrics to W&B every N steps (metrics.jsonl gets every step)

    # The fields the user set on the command line (filled by `load_config`; not a field, so not saved in checkpoints).
    # `--test` lets these win over the values the checkpoint was trained with, and only these: a default the user
    # did not type must not replace what the checkpoint recorded.
    explicit: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        def choice(key: str, accepted: tuple[str, ...]) -> None:
            if getattr(self, key) not in accepted:
                raise UserError(f"{key}={getattr(self, key)!r} is invalid; accepted: {', '.join(accepted)}")

        def at_least(key: str, low: float, kind: str = "an integer") -> None:
            value = getattr(self, key)
            if value is not None and value < low:
                raise UserError(f"{key}={value!r} is invalid; expected {kind} >= {low}")

        choice("mode", ("train", "test", "demo"))
        choice("encoder", ENCODER_NAMES)
        choice("view", VIEWS)
        choice("split", SPLITS)
        choice("wandb", WANDB_MODES)
        choice("precision", PRECISIONS)
        choice("device", DEVICES)
        for key in ("top_k", "num_workers", "warmup_steps", "save_every", "max_target_tokens", "eval_every"):
            at_least(key, 0)
        for key in ("num_visual_tokens", "epochs", "batch_size", "grad_accum", "gallery_size", "max_new_tokens"):
            at_least(key, 1)
        at_least("beams", 1)
        for key in ("max_steps", "eval_images", "keep_checkpoints", "threads", "log_every", "bridge_hidden_dim"):
            at_least(key, 1)
        for key in ("seed", "num_samples"):
            at_least(key, 0)
        for key in ("lr_adapter", "lr_qwen", "weight_decay", "grad_clip"):
            at_least(key, 0, "a number")
        if self.run_name is not None and (self.run_name.strip() in ("", ".", "..") or "/" in self.run_name):
            raise UserError(
                f"run_name={self.run_name!r} is invalid; expected a folder name, without / (OUTPUT_DIR/runs/NAME)"
            )
        check_max_bad_fraction(self.max_bad_fraction)  # [0, 1], NaN refused; the same check as data loading's
        if self.push_to_hub is None:
            for key in ("public", "dry_run", "hub_decoder"):
                if getattr(self, key):
                    raise UserError(
                        f"--{key.replace('_', '-')} only applies to an upload; add --push-to-hub OWNER/NAME"
                    )
        elif self.mode == "test":
            raise UserError("--push-to-hub uploads a checkpoint and trains or tests nothing; run --test separately")
        else:
            hub.check_repo_id(self.push_to_hub)  # before anything is read
            if self.hub_decoder is not None:
                hub.check_repo_id(self.hub_decoder, label=f"--hub-decoder {self.hub_decoder!r}")
        if self.resume not in (False, True, "auto"):
            raise UserError(f"--resume {self.resume!r} is invalid; accepted: --resume, or --resume auto")
        if self.resume == "auto" and not self.run_name:
            raise UserError(
                "--resume auto needs --run-name NAME: a requeued job must find its own run, not the newest of its kind"
            )
        unknown_tasks = set(self.task_list) - {"caption", "qa"}
        if unknown_tasks or not self.task_list:
            raise UserError(f"tasks={self.tasks!r} is invalid; accepted: caption, qa, or caption,qa")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def eval_settings(self, tasks: list[str]) -> EvalSettings:
        """What an evaluation of this run measures, and how (evaluation/protocol.py). No gradients or optimizer
        state while evaluating: twice the training batch fits."""
        return EvalSettings(
            tasks=tuple(tasks), batch_size=2 * self.batch_size, max_target_tokens=self.max_target_tokens,
            max_new_tokens=self.max_new_tokens, gallery_size=self.gallery_size, num_samples=self.num_samples,
            beams=self.beams, length_penalty=self.length_penalty, ptb=self.ptb, seed=self.seed,
            meteor=self.meteor and self.mode == "test", spice=self.spice and self.mode == "test",
        )  # fmt: skip

    def run_settings(self) -> dict[str, Any]:
        """The settings that say what this run trains (`checkpoints.store.RUN_KEYS`): `--resume` continues only a
        run with these."""
        return {key: getattr(self, key) for key in RUN_KEYS}

    def selection(self) -> dict[str, Any]:
        """The settings that pick the run `--test` and `--push-to-hub` use: the encoder and K, and every other run
        setting typed on the command line (but not the evaluation settings `--test` applies to the checkpoint)."""
        typed = [key for key in RUN_KEYS if key in self.explicit and key not in ("encoder", "top_k", *EVAL_KEYS)]
        return {key: getattr(self, key) for key in ("encoder", "top_k", *typed)}


def test_config(cfg: TrainConfig, trained: TrainConfig) -> TrainConfig:
    """The settings of `--test`: the checkpoint's training configuration, with the evaluation flags the user typed.

    `cfg.explicit` names the flags given on the command line (`load_config` records them). Only those win: the
    default of a flag the user did not type must not replace what the checkpoint was trained and validated with.
    """
    given = {key: getattr(cfg, key) for key in EVAL_KEYS if key in cfg.explicit}
    return TrainConfig(**{**trained.to_dict(), **given, "mode": "test"})


# Environment (and .env) keys of the one-pager -> config fields.
ENV_KEYS = {
    "VISION_ENCODER": "encoder",
    "TOP_K": "top_k",
    "BATCH_SIZE": "batch_size",
    "EPOCHS": "epochs",
    "LR_ADAPTER": "lr_adapter",
    "LR_QWEN": "lr_qwen",
    "SEED": "seed",
    "MAX_BAD_FRACTION": "max_bad_fraction",
    "OUTPUT_DIR_MODELS": "output_dir",
    "WANDB_ENTITY": "wandb_entity",
    "WANDB_PROJECT": "wandb_project",
}

HELP = {
    "encoder": "frozen vision encoder: vit (timm ViT-B/16, 768-d CLS), clip (open_clip ViT-B/32, 512-d) or tiny "
    "[env VISION_ENCODER]",
    "encoder_weights": "encoder weights: 'default' (timm's / openai), another pretrained tag, a local file, or 'none'",
    "view": "encoder output the bridge reads: pooled (one embedding) or hidden (all last-layer tokens)",
    "top_k": "how many of the decoder's top blocks train; 0 keeps the language model frozen [env TOP_K]",
    "num_visual_tokens": "visual tokens the bridge prepends to the text",
    "bridge_hidden_dim": "hidden width of the bridge's MLP (default: the decoder's width)",
    "decoder": "Qwen3 checkpoint: a hub repo id or a local directory; demo (random, tiny) or demo-pretrained (the "
    "demo's text-pretrained LM, built offline on first use)",
    "data": "flickr30k (hub), hf:OWNER/REPO, a local directory (Karpathy json, CSV, results.csv), shapes, "
    "synthetic:PATH (made by `python -m synth`), or a comma-separated list of these, merged by image",
    "split": "auto (default): karpathy when the data's own split labels make train, val and test (Karpathy's json, the hub's "
    "Flickr30k CSV, split folders, a Parquet repo's splits), else random; random: 80/10/10 by image, from the seed; "
    "karpathy: the data's own labels (Flickr30k 29,000/1,014/1,000, COCO 113,287/5,000/5,000)",
    "image_column": "the image column of a Parquet dataset repo, when it is not found by itself (default: detected)",
    "caption_column": "the caption column of a Parquet repo or of an imagefolder's metadata file (default: text, "
    "caption or captions)",
    "tasks": "what to train on: caption, qa, or caption,qa (question answering needs data with questions)",
    "max_target_tokens": "target text longer than this many tokens is truncated",
    "max_bad_fraction": "stop loading when more than this share of the images (0-1; default 0.01) is missing or "
    "unreadable; below it, bad images are skipped and counted [env MAX_BAD_FRACTION]",
    "num_workers": "DataLoader worker processes that decode and resize images while features are extracted",
    "epochs": "passes over the training split [env EPOCHS]",
    "batch_size": "samples per step (per optimizer step: batch_size x grad_accum) [env BATCH_SIZE]",
    "grad_accum": "micro-batches accumulated per optimizer step",
    "lr_adapter": "peak learning rate of the bridge [env LR_ADAPTER]",
    "lr_qwen": "peak learning rate of the decoder's top blocks [env LR_QWEN]",
    "weight_decay": "AdamW weight decay (matrices only; not norms or biases)",
    "warmup_steps": "linear warm-up steps before the cosine decay",
    "grad_clip": "clip the global gradient norm to this (0: off)",
    "max_steps": "train this many optimizer steps, then stop with a checkpoint: the warm-up and cosine schedule are "
    "planned for them, and they replace --epochs (more epochs when needed), as transformers' Trainer and nanoGPT do "
    "(default: none, every epoch)",
    "grad_checkpointing": "recompute decoder activations in the backward pass to save memory",
    "seed": "seed of data order, splits and initialisation [env SEED]",
    "device": "auto (cuda if available), cpu or cuda",
    "threads": "CPU threads for PyTorch (default: PyTorch's choice; the demo uses 1)",
    "precision": "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16",
    "eval_images": "images evaluated: after each epoch the first N validation images (default 100, a fixed subset), "
    "with --test the first N test images (default: the checkpoint's setting, else all)",
    "gallery_size": "images per retrieval gallery (with all their captions)",
    "max_new_tokens": "longest generated caption or answer",
    "num_samples": "sample images shown with generated and reference captions",
    "beams": "beam search with this many beams for evaluation captions (default 1: greedy); papers use 3-5",
    "length_penalty": "beam search: score = sum of log-probs / length ** this (default 1: mean log-prob per token)",
    "ptb": "score BLEU/CIDEr on captions tokenised by pycocoevalcap's Java PTB tokenizer, as published results are "
    "(needs `java` on the PATH; default: a pure-Python approximation)",
    "meteor": "with --test: also score METEOR 1.5, as published results do (starts a Java VM, 5-10 s; skipped with one "
    "line without Java); --no-meteor for a quicker test (default: on)",
    "spice": "with --test: also score SPICE (needs Java 8 or 11, Stanford CoreNLP from pycocoevalcap's "
    "get_stanford_models, about 385 MB, and an 8 GB Java heap); when it cannot run, one line says why and the other "
    "metrics are reported",
    "eval_every": "also evaluate on validation every N optimizer steps and when --max-steps stops the run, for learning "
    "curves (0: at the end of each epoch only)",
    "output_dir": "where runs and their checkpoints go, OUTPUT_DIR/runs/NAME/ [env OUTPUT_DIR_MODELS]",
    "cache_dir": "where datasets, encoder features and the demo's LM are cached",
    "run_name": "name of this run and of its folder OUTPUT_DIR/runs/NAME (default: from the encoder, top-K and time); "
    "with --resume, the run to continue",
    "save_every": "also checkpoint every N optimizer steps (0: only at the end of each epoch)",
    "keep_checkpoints": "how many of the newest checkpoints to keep",
    "resume": "continue the newest run with these settings (or --run-name) exactly where it stopped; a run whose "
    "model settings differ is refused. --resume auto --run-name NAME: continue NAME, or start it when it has no "
    "checkpoint yet (for jobs a scheduler requeues)",
    "init_from": "start from another run's trained weights (e.g. stage 1 with --top-k 0, then stage 2): a checkpoint "
    "file, a run folder, an output folder (its newest run with this encoder, view, visual tokens, bridge width and "
    "decoder), hf:OWNER/NAME, or latest (that run in --output-dir) (default: none)",
    "checkpoint": "with --test or --push-to-hub: a .safetensors checkpoint or its .json sidecar, a run folder (its "
    "newest checkpoint), an output folder, hf:OWNER/NAME, or latest: in --output-dir, the newest run of this encoder "
    "and K and of any other run setting typed",
    "push_to_hub": "upload a checkpoint (newest complete one of this encoder and K, or --checkpoint) with a model card "
    "to this hub model repo, OWNER/NAME, and exit (trains nothing); token from HF_TOKEN (default: none)",
    "public": "with --push-to-hub: create the repo public (default: private)",
    "dry_run": "with --push-to-hub: print what would be uploaded, without network",
    "hub_decoder": "with --push-to-hub: the hub id of the decoder when it was trained from a local copy of it "
    "(recorded instead of the local path; default: none)",
    "wandb": "Weights & Biases: auto (online with an API key, else offline), online, offline, disabled",
    "wandb_project": "W&B project [env WANDB_PROJECT]",
    "wandb_entity": "W&B entity (user or team) [env WANDB_ENTITY] (default: your account's default entity)",
    "wandb_group": "W&B group of the run (python -m experiments puts each grid in one; default: none)",
    "log_every": "send the training metrics to W&B every N steps (metrics.jsonl in the run directory gets every step)",
}


def shown(value: Any) -> str:
    """A default as `--help` shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def help_text(field: Field) -> str:
    """A flag's help: its `HELP` line and its default, the dataclass's (and the demo's, where `--demo` changes it).
    The flags default to None in argparse, so that `load_config` can tell a typed value from the default."""
    text = HELP[field.name]
    if field.name in DEMO_SETTINGS and DEMO_SETTINGS[field.name] != field.default:
        text += f" (default: {shown(field.default)}; --demo: {shown(DEMO_SETTINGS[field.name])})"
    elif "default" not in text:
        text += f" (default: {shown(field.default)})"
    return text.replace("%", "%%")  # argparse formats help strings with %


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="train.py",
        description="Train, evaluate and save the vision-language model (frozen encoder + bridge + Qwen3 top-K).",
        formatter_class=argparse.HelpFormatter,  # help_text says each default (argparse's are None here)
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--train", dest="mode", action="store_const", const="train", help="train (the default)")
    modes.add_argument("--test", dest="mode", action="store_const", const="test", help="evaluate a checkpoint")
    modes.add_argument("--demo", dest="mode", action="store_const", const="demo", help="the offline demo")
    for f in fields(TrainConfig):
        if f.name == "mode":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "resume":  # --resume, --resume auto, --no-resume
            parser.add_argument(flag, nargs="?", const=True, default=None, metavar="auto", help=help_text(f))
            parser.add_argument("--no-resume", dest="resume", action="store_false", help="do not resume (default)")
        elif f.type in ("bool",):  # never type=bool: bool("False") is True
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text(f))
        else:
            parser.add_argument(flag, type=str, default=None, metavar=f.name.upper(), help=help_text(f))
    return parser


def _convert(key: str, raw: str, source: str) -> Any:
    """Turn a string from the command line / environment into the field's type, or fail naming the key."""
    field = {f.name: f for f in fields(TrainConfig)}[key]
    kind = str(field.type)
    if raw.strip().lower() in ("", "none") and "None" in kind:
        return None
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except ValueError:
        expected = {"int": "an integer", "float": "a number", "bool": "true or false"}[kind.split(" ")[0]]
        raise UserError(f"{source}={raw!r} is invalid; expected {expected}") from None
    return raw


# What `--demo` changes from the defaults. The demo is self-contained: only command-line flags change it (and
# OUTPUT_DIR_MODELS / WANDB_* from the environment), so a `.env` written for real training cannot break it.
DEMO_SETTINGS: dict[str, Any] = dict(
    data="shapes",
    split="random",  # the shapes set carries split labels, but the demo's numbers were measured on this split
    decoder="demo",
    encoder="tiny",
    encoder_weights="none",
    view="hidden",
    num_visual_tokens=9,  # the tiny encoder's 3x3 patch grid
    top_k=2,  # of the tiny decoder's 3 blocks
    epochs=3,
    batch_size=16,  # more, smaller steps: at this size the number of updates, not the batch, limits learning
    lr_adapter=2e-3,
    lr_qwen=1e-3,
    warmup_steps=50,
    max_target_tokens=24,
    eval_images=50,  # of the 200 held-out validation images: 50 images, 250 captions and 456 questions per evaluation
    gallery_size=10,  # retrieval scores G x 5G (image, caption) pairs per gallery: 5 galleries of 10 take ~2 s
    max_new_tokens=24,
    num_samples=5,
    wandb="offline",
    log_every=10,  # W&B gets every 10th step (metrics.jsonl every step): a W&B call costs 0.4-0.8 ms of a ~32 ms step
    # A model this small runs fastest on one thread: waking a second one for each small kernel costs more than it
    # saves. One demo step on a 2-core machine: 31 ms on 1 thread; on 2 threads, 78 ms with OMP_WAIT_POLICY=PASSIVE
    # and 29 ms with threads that spin while they wait (and so slow down everything else on the machine).
    threads=1,
)
DEMO_ENV_KEYS = ("OUTPUT_DIR_MODELS", "WANDB_ENTITY", "WANDB_PROJECT")


def load_config(
    argv: list[str] | None = None, env: dict[str, str] | None = None, dotenv: str | Path | None = None
) -> TrainConfig:
    """Command line > environment > .env > defaults (for --demo: command line > demo settings), validated. `dotenv`:
    the `.env` file to read (default: the repository's, `runtime.env.DOTENV`, wherever the command runs)."""
    args = build_parser().parse_args(argv)
    env = dict(os.environ) if env is None else env
    file_values = dotenv_values(dotenv)
    # Libraries read HF_TOKEN / WANDB_API_KEY from the environment; a .env entry fills a gap, never overrides.
    for key in ("HF_TOKEN", "WANDB_API_KEY"):
        if key in file_values and key not in os.environ:
            os.environ[key] = file_values[key]

    demo = args.mode == "demo"
    values: dict[str, Any] = dict(DEMO_SETTINGS) if demo else {}
    for env_key, name in ENV_KEYS.items():
        if demo and env_key not in DEMO_ENV_KEYS:
            continue
        for source in (file_values, env):  # later wins: environment over .env
            if env_key in source:
                values[name] = _convert(name, source[env_key], env_key)
    given = {name for name, raw in vars(args).items() if raw is not None and name != "mode"}
    for name in given:
        raw, flag = getattr(args, name), "--" + name.replace("_", "-")
        values[name] = raw if isinstance(raw, bool) else _convert(name, raw, flag)
    if args.mode is not None:
        values["mode"] = args.mode
    cfg = TrainConfig(**values)
    cfg.explicit = frozenset(given)  # an instance attribute, shadowing the class's empty set
    check_typed_together(cfg)
    return cfg


def check_typed_together(cfg: TrainConfig) -> None:
    """Flags typed on one command line that contradict each other (the values of a checkpoint's sidecar are not
    checked here: a stage-2 run's settings hold both --init-from and, once tested, mode test)."""
    typed = cfg.explicit
    if cfg.mode == "test":
        for name in ("resume", "init_from"):
            if name in typed and getattr(cfg, name):
                raise UserError(
                    f"--test evaluates a checkpoint and trains nothing, so --{name.replace('_', '-')} does not apply; "
                    "name the checkpoint with --checkpoint"
                )
    elif "checkpoint" in typed and cfg.checkpoint != "latest" and not cfg.push_to_hub:
        raise UserError(
            "--checkpoint names the checkpoint of --test or --push-to-hub; to start training from a checkpoint's "
            "weights use --init-from, to continue a run --resume"
        )
