"""The training configuration: one dataclass with parts, filled from the command line, the environment, `.env` and
defaults.

`TrainConfig` holds the model's settings (`cfg.model`, a `VLMConfig`: bridge/vlm.py), the evaluation's
(`cfg.evaluation`, `EvalOptions`: evaluation/protocol.py) and the upload's (`cfg.share`, `HubUpload`:
checkpoints/share.py) as parts, beside the run's own (data, optimisation, output, tracking). Each setting is declared
once, where it is used, with its help, type and environment key (runtime/settings.py); the flags, `--help`, the
environment keys (`ENV_KEYS`), the settings that say what a run trains (`RUN_KEYS`) and those `--test` takes from
its command line (`EVAL_KEYS`) are all read from those declarations. Flags stay flat (`--top-k`, not
`--model.top-k`), and so do checkpoints' records of a run (`to_dict`, `from_dict`).

Precedence, highest first: command-line flag > environment variable > `.env` file > default. The environment keys
are the project one-pager's (`VISION_ENCODER`, `TOP_K`, `BATCH_SIZE`, `EPOCHS`, `LR_ADAPTER`, `LR_QWEN`, `SEED`,
`OUTPUT_DIR_MODELS`, `WANDB_ENTITY`, `WANDB_PROJECT`, `HF_TOKEN`); `.env.example` documents them.

Every value is validated once, by the dataclass that holds it: a bad one ends the program with one line that names
the key, the value and what is accepted (exit status 2), never a traceback from deep inside training.

Read next: `training/preflight.py` (the checks that follow), `training/run.py` (where the settings are used).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from bridge.vlm import VLMConfig
from checkpoints.share import HubUpload
from checkpoints.store import DEFAULT_OUTPUT_DIR
from data.images import check_max_bad_fraction
from data.splits import SCHEMES
from errors import OneLineArgumentParser, UserError
from evaluation.protocol import EvalOptions, EvalSettings
from runtime.devices import DEVICES, PRECISIONS
from runtime.env import DEFAULT_CACHE_DIR, dotenv_values
from runtime.settings import default_of, field_type, parse_value, setting
from training.tracking import DEFAULT_PROJECT

WANDB_MODES = ("auto", "online", "offline", "disabled")
SPLITS = SCHEMES  # auto | random | karpathy (data/splits.py)


@dataclass
class TrainConfig:
    """Everything a run needs: the model (`VLMConfig`), the evaluation (`EvalOptions`) and the upload (`HubUpload`)
    as parts, and the run's own settings. Every field is a flag: `top_k` <-> `--top-k`, wherever it lives
    (`cfg.model.top_k`); `to_dict()` is the flat view that checkpoints record and `from_dict` reads back."""

    mode: str = "train"  # train | test | demo: the flags --train, --test, --demo
    model: VLMConfig = field(default_factory=VLMConfig)  # encoder, its weights, view, visual tokens, K, bridge width
    decoder: str = setting(
        "Qwen/Qwen3-0.6B-Base",
        "Qwen3 checkpoint: a hub repo id or a local directory; demo (random, tiny) or demo-pretrained (the demo's "
        "text-pretrained LM, built offline on first use)",
        run=True,
    )
    # data
    data: str = setting(
        "flickr30k",
        "flickr30k (hub), hf:OWNER/REPO, a local directory (Karpathy json, CSV, results.csv), shapes, synthetic:PATH "
        "(made by `python -m synth`), or a comma-separated list of these, merged by image",
        run=True,
    )
    split: str = setting(
        "auto",
        "auto (default): karpathy when the data's own split labels make train, val and test (Karpathy's json, the "
        "hub's Flickr30k CSV, split folders, a Parquet repo's splits), else random; random: 80/10/10 by image, from "
        "the seed; karpathy: the data's own labels (Flickr30k 29,000/1,014/1,000, COCO 113,287/5,000/5,000)",
        run=True,
    )
    image_column: str | None = setting(
        None, "the image column of a Parquet dataset repo, when it is not found by itself (default: detected)"
    )
    caption_column: str | None = setting(
        None,
        "the caption column of a Parquet repo or of an imagefolder's metadata file (default: text, caption or captions)",
    )
    tasks: str = setting(
        "caption,qa",
        "what to train on: caption, qa, or caption,qa (question answering needs data with questions)",
        run=True,
    )
    max_target_tokens: int = setting(48, "target text longer than this many tokens is truncated", run=True)
    max_bad_fraction: float = setting(
        0.01,
        "stop loading when more than this share of the images (0-1; default 0.01) is missing or unreadable; below it, "
        "bad images are skipped and counted",
        env="MAX_BAD_FRACTION",
    )
    num_workers: int = setting(
        0, "DataLoader worker processes that decode and resize images while features are extracted"
    )
    # optimisation
    epochs: int = setting(3, "passes over the training split", env="EPOCHS", run=True)
    batch_size: int = setting(
        32, "samples per step (per optimizer step: batch_size x grad_accum)", env="BATCH_SIZE", run=True
    )
    grad_accum: int = setting(1, "micro-batches accumulated per optimizer step", run=True)
    lr_adapter: float = setting(1e-3, "peak learning rate of the bridge", env="LR_ADAPTER", run=True)
    lr_qwen: float = setting(2e-5, "peak learning rate of the decoder's top blocks", env="LR_QWEN", run=True)
    lr_lora: float = setting(
        2e-4, "peak learning rate of the LoRA adapters (--lora-rank; usually 1e-4 and up, above --lr-qwen)", run=True
    )
    weight_decay: float = setting(0.01, "AdamW weight decay (matrices only; not norms or biases)", run=True)
    warmup_steps: int = setting(100, "linear warm-up steps before the cosine decay", run=True)
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (0: off)", run=True)
    max_steps: int | None = setting(
        None,
        "train this many optimizer steps, then stop with a checkpoint: the warm-up and cosine schedule are planned for "
        "them, and they replace --epochs (more epochs when needed), as transformers' Trainer and nanoGPT do (default: "
        "none, every epoch)",
    )
    grad_checkpointing: bool = setting(False, "recompute decoder activations in the backward pass to save memory")
    seed: int = setting(0, "seed of data order, splits and initialisation", env="SEED", run=True)
    device: str = setting("auto", "auto (cuda if available), cpu or cuda")
    threads: int | None = setting(None, "CPU threads for PyTorch (default: PyTorch's choice; the demo uses 1)")
    precision: str = setting("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16")
    # evaluation: which images and when here; how (decoding, metrics) in the part
    eval_images: int | None = setting(
        None,
        "images evaluated: after each epoch the first N validation images (default 100, a fixed subset), with --test "
        "the first N test images (default: the checkpoint's setting, else all)",
    )
    eval_every: int = setting(
        0,
        "also evaluate on validation every N optimizer steps and when --max-steps stops the run, for learning curves "
        "(0: at the end of each epoch only)",
    )
    evaluation: EvalOptions = field(default_factory=EvalOptions)  # gallery, decoding, metrics
    # output
    output_dir: str = setting(
        DEFAULT_OUTPUT_DIR, "where runs and their checkpoints go, OUTPUT_DIR/runs/NAME/", env="OUTPUT_DIR_MODELS"
    )
    cache_dir: str = setting(DEFAULT_CACHE_DIR, "where datasets, encoder features and the demo's LM are cached")
    run_name: str | None = setting(
        None,
        "name of this run and of its folder OUTPUT_DIR/runs/NAME (default: from the encoder, top-K and time); with "
        "--resume, the run to continue",
    )
    save_every: int = setting(0, "also checkpoint every N optimizer steps (0: only at the end of each epoch)")
    keep_checkpoints: int = setting(2, "how many of the newest checkpoints to keep")
    resume: bool | str = setting(
        False,
        "continue the newest run with these settings (or --run-name) exactly where it stopped; a run whose model "
        "settings differ is refused. --resume auto --run-name NAME: continue NAME, or start it when it has no "
        "checkpoint yet (for jobs a scheduler requeues)",
    )  # True (--resume), "auto" (--resume auto: also a first start), False
    init_from: str | None = setting(
        None,
        "start from another run's trained weights (e.g. stage 1 with --top-k 0, then stage 2): a checkpoint file, a "
        "run folder, an output folder (its newest run with this encoder, view, visual tokens, bridge width and "
        "decoder), hf:OWNER/NAME, or latest (that run in --output-dir) (default: none)",
    )
    checkpoint: str = setting(
        "latest",
        "with --test or --push-to-hub: a .safetensors checkpoint or its .json sidecar, a run folder (its newest "
        "checkpoint), an output folder, hf:OWNER/NAME, or latest: in --output-dir, the newest run of this encoder and "
        "K and of any other run setting typed",
    )
    share: HubUpload = field(default_factory=HubUpload)  # --push-to-hub and its options (checkpoints/share.py)
    # tracking
    wandb: str = setting(
        "auto", "Weights & Biases: auto (online with an API key, else offline), online, offline, disabled"
    )
    wandb_project: str = setting(DEFAULT_PROJECT, "W&B project", env="WANDB_PROJECT")
    wandb_entity: str | None = setting(
        None, "W&B entity (user or team) (default: your account's default entity)", env="WANDB_ENTITY"
    )
    wandb_group: str | None = setting(
        None, "W&B group of the run (python -m experiments puts each grid in one; default: none)"
    )
    log_every: int = setting(
        1, "send the training metrics to W&B every N steps (metrics.jsonl in the run directory gets every step)"
    )

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
        choice("split", SPLITS)
        choice("wandb", WANDB_MODES)
        choice("precision", PRECISIONS)
        choice("device", DEVICES)
        for key in ("num_workers", "warmup_steps", "save_every", "max_target_tokens", "eval_every", "seed"):
            at_least(key, 0)
        for key in ("epochs", "batch_size", "grad_accum", "max_steps", "eval_images", "keep_checkpoints", "threads"):
            at_least(key, 1)
        at_least("log_every", 1)
        for key in ("lr_adapter", "lr_qwen", "lr_lora", "weight_decay", "grad_clip"):
            at_least(key, 0, "a number")
        if self.run_name is not None and (self.run_name.strip() in ("", ".", "..") or "/" in self.run_name):
            raise UserError(
                f"run_name={self.run_name!r} is invalid; expected a folder name, without / (OUTPUT_DIR/runs/NAME)"
            )
        check_max_bad_fraction(self.max_bad_fraction)  # [0, 1], NaN refused; the same check as data loading's
        if self.share.push_to_hub is not None and self.mode == "test":
            raise UserError("--push-to-hub uploads a checkpoint and trains or tests nothing; run --test separately")
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
        """The flat view, one key per flag (`top_k`, not `model.top_k`): what a checkpoint's sidecar records as its
        `train_config`, and what `from_dict` reads back."""
        flat = {}
        for f in fields(self):
            value = getattr(self, f.name)
            flat.update(asdict(value) if f.name in PARTS else {f.name: value})
        return flat

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The configuration with these flat values (`to_dict`'s keys; any subset), each routed to its part and
        validated there. An unknown key is one line."""
        unknown = sorted(set(values) - set(FLAGS) - {"mode"})
        if unknown:
            raise UserError(f"unknown setting {unknown[0]!r}; accepted: {', '.join(FLAGS)}")
        own = {k: v for k, v in values.items() if FLAGS.get(k, (None, None))[0] is None}
        parts = {
            part: kind(**{k: v for k, v in values.items() if FLAGS.get(k, (None, None))[0] == part})
            for part, kind in PARTS.items()
        }
        return cls(**own, **parts)

    def eval_settings(self, tasks: list[str]) -> EvalSettings:
        """What an evaluation of this run measures, and how (evaluation/protocol.py): the evaluation options, and what
        this run fixes. No gradients or optimizer state while evaluating: twice the training batch fits."""
        options = asdict(self.evaluation)
        test = self.mode == "test"
        options.update(meteor=options["meteor"] and test, spice=options["spice"] and test)
        return EvalSettings(
            **options, tasks=tuple(tasks), batch_size=2 * self.batch_size, max_target_tokens=self.max_target_tokens,
            seed=self.seed,
        )  # fmt: skip

    def run_settings(self) -> dict[str, Any]:
        """The settings that say what this run trains (`RUN_KEYS`): `--resume` continues only a run with these."""
        flat = self.to_dict()
        return {key: flat[key] for key in RUN_KEYS}

    def selection(self) -> dict[str, Any]:
        """The settings that pick the run `--test` and `--push-to-hub` use: the encoder and K, and every other run
        setting typed on the command line (but not the evaluation settings `--test` applies to the checkpoint)."""
        typed = [key for key in RUN_KEYS if key in self.explicit and key not in ("encoder", "top_k", *EVAL_KEYS)]
        settings = self.run_settings()
        return {key: settings[key] for key in ("encoder", "top_k", *typed)}


# The parts, by attribute name, and every flag's home: flag name -> (part or None for TrainConfig's own, field).
PARTS: dict[str, type] = {"model": VLMConfig, "evaluation": EvalOptions, "share": HubUpload}


def _flags() -> dict[str, tuple[str | None, Field]]:
    found: dict[str, tuple[str | None, Field]] = {}
    for f in fields(TrainConfig):
        if f.name == "mode":
            continue
        for part, g in [(f.name, g) for g in fields(PARTS[f.name])] if f.name in PARTS else [(None, f)]:
            if g.name in found:  # a flag must name one setting
                raise RuntimeError(f"two settings are called {g.name!r}")
            found[g.name] = (part, g)
    return found


FLAGS = _flags()
# The settings that say what a run trains (declared with run=True): two runs with equal values are the same experiment.
RUN_KEYS = tuple(name for name, (_, f) in FLAGS.items() if f.metadata["run"])
# The evaluation settings that `--test` takes from the command line when typed there (`test_config`).
EVAL_KEYS = (*(f.name for f in fields(EvalOptions)), "eval_images", "batch_size")
# Environment (and .env) keys of the one-pager -> their settings (declared with env=...).
ENV_KEYS = {f.metadata["env"]: name for name, (_, f) in FLAGS.items() if f.metadata.get("env")}


def owner(part: str | None) -> type:
    return TrainConfig if part is None else PARTS[part]


def test_config(cfg: TrainConfig, trained: TrainConfig) -> TrainConfig:
    """The settings of `--test`: the checkpoint's training configuration, with the evaluation flags the user typed.

    `cfg.explicit` names the flags given on the command line (`load_config` records them). Only those win: the
    default of a flag the user did not type must not replace what the checkpoint was trained and validated with.
    """
    typed = cfg.to_dict()
    given = {key: typed[key] for key in EVAL_KEYS if key in cfg.explicit}
    return TrainConfig.from_dict({**trained.to_dict(), **given, "mode": "test"})


def shown(value: Any) -> str:
    """A default as `--help` shows it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def help_text(f: Field) -> str:
    """A flag's help: the line declared with its field, its environment key, and its default (and the demo's, where
    `--demo` changes it). The flags default to None in argparse, so that `load_config` can tell a typed value from
    the default."""
    text = f.metadata["help"]
    if f.metadata.get("env"):
        text += f" [env {f.metadata['env']}]"
    default = default_of(f)
    if f.name in DEMO_SETTINGS and DEMO_SETTINGS[f.name] != default:
        text += f" (default: {shown(default)}; --demo: {shown(DEMO_SETTINGS[f.name])})"
    elif "default" not in f.metadata["help"]:
        text += f" (default: {shown(default)})"
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
    for name, (part, f) in FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if name == "resume":  # --resume, --resume auto, --no-resume
            parser.add_argument(flag, nargs="?", const=True, default=None, metavar="auto", help=help_text(f))
            parser.add_argument("--no-resume", dest="resume", action="store_false", help="do not resume (default)")
        elif field_type(owner(part), f)[0] is bool:  # never type=bool: bool("False") is True
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text(f))
        else:
            parser.add_argument(flag, type=str, default=None, metavar=name.upper(), help=help_text(f))
    return parser


def _convert(key: str, raw: str, source: str) -> Any:
    """Turn a string from the command line / environment into the setting's annotated type, or fail naming it."""
    part, f = FLAGS[key]
    return parse_value(owner(part), f, raw, source)


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
    cfg = TrainConfig.from_dict(values)
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
    elif "checkpoint" in typed and cfg.checkpoint != "latest" and not cfg.share.push_to_hub:
        raise UserError(
            "--checkpoint names the checkpoint of --test or --push-to-hub; to start training from a checkpoint's "
            "weights use --init-from, to continue a run --resume"
        )
