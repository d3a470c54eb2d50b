"""Train the vision-language model: a frozen vision encoder, a trainable bridge, Qwen3 with its top K blocks trainable.

    python train.py --encoder vit --top-k 3          # Flickr30k + Qwen3-0.6B-Base (GPU and network, or local copies)
    python train.py --demo                           # the offline demo: shapes set, tiny decoder, a few CPU minutes
    python train.py --test --encoder vit --top-k 3   # evaluate the newest checkpoint on the test split

The file reads top to bottom: configuration, data, model, optimizer, schedule, the loop, evaluation, checkpoints.
Settings come from flags, the environment or `.env` (see `training/config.py` and `.env.example`).

References: nanoGPT's train.py (https://github.com/karpathy/nanoGPT) for the shape of the loop; LLaVA
(https://arxiv.org/abs/2304.08485) for the two-stage recipe (`--top-k 0`, then `--init-from` with `--top-k 3`).
"""

from __future__ import annotations

import os

# Before torch is imported: its OpenMP runtime reads this once, when it loads. PASSIVE lets idle threads sleep instead
# of spinning, which otherwise makes small CPU models 10-20x slower as soon as anything else runs on the machine (see
# the Makefile). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel

from bridge import VisionLanguageModel, VLMConfig
from data import Splits, VLMCollator, batch_order, load_dataset, make_samples
from errors import UserError
from metrics.captioning import require_java
from runtime.distributed import Distributed, setup_distributed, teardown_distributed
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from training.checkpoint import (
    checkpoint_stem,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    read_training_state,
    save_checkpoint,
    write_atomically,
)
from training.config import TrainConfig, load_config
from training.demo import demo_decoder, demo_tokenizer
from training.evaluate import evaluate
from training.preflight import RANDOM_INIT, check_run  # --decoder random-init:SOURCE: SOURCE's layout, random weights
from training.pretrain import DEMO_PRETRAINED, pretrained_demo_lm
from training.protocol import VAL_IMAGES_PER_EPOCH, evaluation_config, protocol
from training.restore import load_trained
from training.schedule import lr_lambda  # linear warm-up, then cosine decay to 10% of the peak
from training.share import push_checkpoint
from training.tracking import Tracker
from vision import FeatureCache, MappedFeatures, build_clip_text, build_encoder
from weights_loader import load_qwen3, load_tokenizer, resolve_checkpoint, save_qwen3

console = Console(stderr=True, highlight=False)
MAX_BAD_STEPS = 5  # non-finite losses in a row before the run stops
DIST = Distributed()  # this process's place among torchrun's processes (one process: rank 0 of 1)


def log(message: str, style: str = "cyan") -> None:
    if DIST.is_main:  # with torchrun, only rank 0 talks
        console.print(f"[{style}]{datetime.now():%H:%M:%S}[/] {message}")


def main_first(work):
    """Run `work` on rank 0 first (it may write files: the shapes set, the feature cache), then on the others."""
    if not DIST.is_main:
        DIST.barrier()
    result = work()
    if DIST.is_main:
        DIST.barrier()
    return result


# ---------------------------------------------------------------------------------------------------------------------
# 1. Configuration and devices
# ---------------------------------------------------------------------------------------------------------------------


def resolve_device(cfg: TrainConfig) -> tuple[torch.device, contextlib.AbstractContextManager]:
    """The device, and an autocast context factory: bf16 autocast on CUDA (or when asked), fp32 otherwise."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible; use --device cpu or auto")
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", DIST.local_rank)  # one GPU per process under torchrun
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")

    def autocast():
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    return device, autocast


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------------
# 2. Model: decoder + tokenizer, frozen encoder, bridge
# ---------------------------------------------------------------------------------------------------------------------


def build_decoder_and_tokenizer(cfg: TrainConfig, splits, device: torch.device):
    """The decoder and its tokenizer: one of the demo's tiny pairs (saved in the hub's layout), or a real checkpoint.

    `demo` is a random decoder; `demo-pretrained` is the same architecture pretrained on the training split's text
    alone (training/pretrain.py), the offline stand-in for Qwen3-0.6B-Base: with --top-k 0 the bridge learns to
    steer a frozen language model that has never seen an image. `random-init:SOURCE` is SOURCE's architecture and
    tokenizer with random weights: the control that shows what the pretrained weights bring.
    """
    if cfg.decoder == DEMO_PRETRAINED:
        cache_dir = Path(cfg.cache_dir).expanduser().resolve()
        directory = main_first(lambda: pretrained_demo_lm(splits.train, splits.val, cache_dir, seed=cfg.seed, log=log))
        return load_qwen3(directory, device=device), load_tokenizer(directory), str(directory)
    if cfg.decoder == "demo":
        # Made here and saved in the hub's layout, then loaded back like any checkpoint: --test, --resume and
        # caption.py rebuild it from that directory, and every torchrun process loads the same one.
        directory = Path(cfg.output_dir).expanduser().resolve() / f"demo_decoder_seed{cfg.seed}"

        def make_demo_decoder() -> None:
            tokenizer = demo_tokenizer(splits.train + splits.val + splits.test)
            save_qwen3(demo_decoder(tokenizer.vocab_size, tokenizer.eos_id, seed=cfg.seed), directory)
            tokenizer.tokenizer.save(str(directory / "tokenizer.json"))
            special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
            (directory / "tokenizer_config.json").write_text(json.dumps(special))

        main_first(lambda: make_demo_decoder() if DIST.is_main else None)
        return load_qwen3(directory, device=device), load_tokenizer(directory), str(directory)
    if cfg.decoder.startswith(RANDOM_INIT):
        # The control of the transfer experiment: SOURCE's architecture and tokenizer, random weights (SOURCE's own
        # weights are not fetched). Saved beside the checkpoints like the demo decoder, so --test and caption.py
        # rebuild it the same way.
        source = cfg.decoder.removeprefix(RANDOM_INIT)
        path = resolve_checkpoint(source, need="tokenizer")  # config.json and the tokenizer files
        directory = Path(cfg.output_dir).expanduser().resolve() / f"random_init_{Path(source).name}_seed{cfg.seed}"

        def make_random_decoder() -> None:
            torch.manual_seed(cfg.seed)
            save_qwen3(Qwen3ForCausalLM(Qwen3Config.from_json_file(path / "config.json")), directory)
            for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
                if (path / name).exists():
                    shutil.copyfile(path / name, directory / name)

        main_first(lambda: make_random_decoder() if DIST.is_main and not directory.exists() else None)
        log(f"random-init decoder with the layout of {source}: {directory}")
        return load_qwen3(directory, device=device), load_tokenizer(directory), str(directory)
    # --top-k was checked against the decoder's blocks before any work (check_run, training/preflight.py).
    log(f"loading decoder {cfg.decoder}")
    path = resolve_checkpoint(cfg.decoder)  # downloads once from the hub, or checks the local directory
    return load_qwen3(path, device=device), load_tokenizer(path), cfg.decoder


def build_model(cfg: TrainConfig, decoder, device: torch.device) -> VisionLanguageModel:
    encoder = build_encoder(cfg.encoder, cfg.encoder_weights).to(device)
    vlm_config = VLMConfig(
        encoder=cfg.encoder,
        encoder_weights=cfg.encoder_weights,
        view=cfg.view,
        num_visual_tokens=cfg.num_visual_tokens,
        top_k=cfg.top_k,
        bridge_hidden_dim=cfg.bridge_hidden_dim,
    )
    torch.manual_seed(cfg.seed)  # the bridge's initialisation
    model = VisionLanguageModel(vlm_config, encoder, decoder).to(device)
    model.decoder.gradient_checkpointing = cfg.grad_checkpointing
    return model


def image_features(
    cfg: TrainConfig, model: VisionLanguageModel, records, device: torch.device, view: str | None = None
) -> MappedFeatures:
    """Frozen-encoder features of `records`, computed once, cached on disk and read from it a batch at a time
    (`features[batch_indices]` is a tensor of those rows; see vision/cache.py and vision/mapped.py)."""
    cache = FeatureCache(Path(cfg.cache_dir).expanduser() / "features")
    features, valid = cache.features(model.encoder, [r.path for r in records], view or cfg.view, device=device)
    if not valid.all():  # data loading already dropped unreadable images; this is a last guard
        raise UserError(f"{int((~valid).sum())} images could not be encoded; see the cache manifest in {cache.root}")
    return features


def clip_zero_shot_inputs(cfg: TrainConfig, model: VisionLanguageModel, records, device: torch.device):
    """With the CLIP encoder: its text tower and the image embeddings, for CLIP's own retrieval as a reference row."""
    if cfg.encoder != "clip" or not records:
        return None
    text_tower = build_clip_text(cfg.encoder_weights).to(device)
    return text_tower, image_features(cfg, model, records, device, view="pooled").tensor()  # [N, 512], small


# ---------------------------------------------------------------------------------------------------------------------
# 3. Optimizer and schedule
# ---------------------------------------------------------------------------------------------------------------------


def build_optimizer(cfg: TrainConfig, model: VisionLanguageModel, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the bridge and the decoder's top blocks at their own learning rates; no decay on norms/biases."""
    groups = []
    for name, lr in (("bridge", cfg.lr_adapter), ("decoder", cfg.lr_qwen)):
        params = model.parameter_groups()[name]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay, "name": name},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": name},
        ]
    groups = [g for g in groups if g["params"]]
    # The fused kernel updates all parameters in one pass: on CUDA, and on the CPU too (9.5x faster per step there
    # in BENCHMARKS.md); other devices keep the for-loop implementation.
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), fused=device.type in ("cuda", "cpu"))


# ---------------------------------------------------------------------------------------------------------------------
# 4. Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def sidecar(cfg, model, decoder_source, tokenizer, data_info, epoch, step, complete, metrics, run_dir) -> dict:
    return {
        "format": 1,
        "epoch": epoch,
        "global_step": step,
        "complete_epoch": complete,
        "model": model.config.to_dict(),
        "decoder": {"source": decoder_source, "config": model.decoder.config.to_dict()},
        "tokenizer": {"source": decoder_source, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id},
        "data": data_info,
        "train_config": cfg.to_dict(),
        "metrics": metrics,
        "run_dir": str(run_dir),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def training_state(optimizer, scheduler, epoch: int, position: int, step: int, bad_steps: int) -> dict:
    """Everything besides the weights that an exact resume needs (tensors and plain values only)."""
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "position": position,  # micro-batches of this epoch already consumed
        "global_step": step,
        "bad_steps": bad_steps,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def load_init_weights(model: VisionLanguageModel, path: str) -> None:
    """--init-from: start from another run's bridge (and blocks this run also trains)."""
    weights, meta = read_checkpoint(path)
    own = model.trainable_state_dict()
    frozen_here = sorted(k for k in weights if k not in own)
    if frozen_here:
        raise UserError(
            f"{Path(path).name} trained {frozen_here[0]} (and {len(frozen_here) - 1} more), which this run freezes; "
            f"use --top-k {meta['model']['top_k']} or more"
        )
    model.load_trainable_state_dict({**own, **weights})


# ---------------------------------------------------------------------------------------------------------------------
# 5. The run, in named steps: data, model, features, optimizer, resume, tracking, the loop, evaluation
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a training run returns to its caller (`main`, or the experiment runner in `experiments/`)."""

    metrics: dict[str, float]  # the last validation's metrics (with "shuffled/..." from the last epoch's control)
    history: list[dict] = field(default_factory=list)  # every validation: {"step", "epoch", **metrics}
    train_seconds: float = 0.0  # the training loop: optimizer steps and --eval-every's mid-epoch evaluations
    trainable_parameters: int = 0
    run_dir: Path | None = None


@dataclass
class Data:
    """The splits, the tasks trained, and the validation images evaluated each epoch."""

    splits: Splits
    tasks: list[str]
    val_records: list


@dataclass
class Position:
    """Where the loop is: a checkpoint stores it, and `--resume` starts from it."""

    epoch: int = 1
    batch: int = 0  # micro-batches of this epoch already consumed
    step: int = 0  # optimizer steps taken
    bad_steps: int = 0  # non-finite losses in a row


def run(cfg: TrainConfig) -> RunResult:
    global DIST
    DIST = setup_distributed()
    try:
        return _run(cfg)
    finally:
        teardown_distributed(DIST)
        DIST = Distributed()


def _run(cfg: TrainConfig) -> RunResult:
    check_run(cfg)  # seconds: a bad decoder, encoder weights, data source or --ptb without Java fails before any work
    device, autocast = resolve_device(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    log(f"mode={cfg.mode} encoder={cfg.encoder} view={cfg.view} top_k={cfg.top_k} device={device}")
    if cfg.mode == "test":
        return RunResult(run_test(cfg, device, autocast))

    data = load_data(cfg)
    decoder, tokenizer, decoder_source = build_decoder_and_tokenizer(cfg, data.splits, device)
    model = build_model(cfg, decoder, device)
    if cfg.init_from:
        load_init_weights(model, cfg.init_from)
        log(f"initialised the bridge{' and top blocks' if cfg.top_k else ''} from {cfg.init_from}")
    log("what trains:\n" + model.summary())
    val_protocol = protocol(cfg, f"{cfg.split} validation", data.val_records, 2 * cfg.batch_size)
    log(val_protocol.describe())
    train_features, val_features = main_first(
        lambda: (
            image_features(cfg, model, data.splits.train, device),
            image_features(cfg, model, data.val_records, device),
        )
    )
    clip_reference = clip_zero_shot_inputs(cfg, model, data.val_records, device)

    samples = make_samples(data.splits.train, data.tasks)
    collate = VLMCollator(tokenizer.tokenizer, tokenizer.eos_id, tokenizer.pad_id, cfg.max_target_tokens)
    lengths = [len(s.target) + len(s.prompt) for s in samples]  # characters: a cheap proxy for bucketing
    batches_per_epoch = math.ceil(len(samples) / cfg.batch_size)
    total_steps = math.ceil(batches_per_epoch / cfg.grad_accum) * cfg.epochs  # --max-steps only stops early

    optimizer = build_optimizer(cfg, model, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps, total_steps))
    at = resume(cfg, model, optimizer, scheduler, batches_per_epoch) if cfg.resume else Position()

    run_name = cfg.run_name or f"{cfg.encoder}_top{cfg.top_k}_{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.output_dir).expanduser() / "runs" / run_name
    tracker = make_tracker(cfg, run_dir, run_name)
    log(f"run directory {run_dir} (W&B {tracker.mode})")
    # Under torchrun, DDP averages the trainable parameters' gradients across processes in backward().
    train_model = (
        DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
        if DIST.enabled
        else model
    )
    data_info = {"source": cfg.data, "split": cfg.split, "seed": cfg.seed, "tasks": data.tasks}

    def checkpoint(complete: bool, metrics: dict) -> None:
        if not DIST.is_main:  # every process holds the same weights; one writes them
            return
        stem = checkpoint_stem(at.epoch, cfg.encoder, cfg.top_k)
        meta = sidecar(cfg, model, decoder_source, tokenizer, data_info, at.epoch, at.step, complete, metrics, run_dir)
        state = training_state(optimizer, scheduler, at.epoch, at.batch, at.step, at.bad_steps)
        path = save_checkpoint(Path(cfg.output_dir).expanduser(), stem, model.trainable_state_dict(), meta, state)
        prune_checkpoints(Path(cfg.output_dir).expanduser(), cfg.keep_checkpoints, cfg.encoder, cfg.top_k)
        log(f"checkpoint {path}")

    def validate(shuffled_control: bool) -> dict:
        # No gradients or optimizer state while evaluating: twice the training batch fits. The shuffled-images
        # control generates everything a second time, so only the last epoch runs it.
        result = evaluate(
            model, data.val_records, val_features, tokenizer, tasks=data.tasks, batch_size=2 * cfg.batch_size,
            max_target_tokens=cfg.max_target_tokens, max_new_tokens=cfg.max_new_tokens,
            gallery_size=cfg.gallery_size, num_samples=cfg.num_samples, shuffled_control=shuffled_control,
            beams=cfg.beams, length_penalty=cfg.length_penalty, use_ptb=cfg.ptb,
            device=device, autocast=autocast, seed=cfg.seed, clip_reference=clip_reference, dist=DIST,
        )  # fmt: skip
        history.append({"step": at.step, "epoch": at.epoch - 1 + at.batch / batches_per_epoch, **result.metrics})
        tracker.log({f"val/{k}": v for k, v in result.metrics.items()}, step=at.step)
        log_samples(tracker, result.samples, at.step)
        samples_shown[:] = result.samples
        return result.metrics

    # --- the loop: one epoch at a time, evaluation and a checkpoint after each ----------------------------------------
    all_metrics: dict[str, dict] = {}
    history: list[dict] = []
    samples_shown: list[dict] = []
    last_eval: dict = {}
    train_seconds = 0.0
    model.train()
    try:
        while at.epoch <= cfg.epochs:
            started = time.perf_counter()
            stopped = train_epoch(
                cfg, train_model, optimizer, scheduler, samples, lengths, collate, train_features, at,
                device, autocast, tracker, checkpoint,
                validate=validate if cfg.eval_every and data.val_records else None,
            )  # fmt: skip
            train_seconds += time.perf_counter() - started
            complete = at.batch >= batches_per_epoch
            # With --eval-every, a run that --max-steps stops early is evaluated too: its curve gets a last point.
            if (complete or (stopped and cfg.eval_every)) and data.val_records:
                last_eval = validate(shuffled_control=at.epoch == cfg.epochs or stopped)
                all_metrics[f"epoch_{at.epoch}/val"] = {**last_eval, "protocol": val_protocol.to_dict()}
                log(format_metrics(f"epoch {at.epoch} validation", last_eval), "green")
            checkpoint(complete, last_eval if complete else {})
            if stopped:
                log(f"stopped at --max-steps {cfg.max_steps}")
                break
            at.epoch, at.batch = at.epoch + 1, 0
    except KeyboardInterrupt:
        # Keep the work: the weights and optimizer are those of the last finished step.
        log("interrupted: saving a checkpoint to resume from", "yellow")
        checkpoint(False, {})
        tracker.finish(exit_code=130)
        raise

    if DIST.is_main:
        write_metrics(run_dir, all_metrics)
        print_samples(samples_shown)  # the last evaluation's sample images: generated and reference captions, answers
    tracker.summary({f"final/{k}": v for k, v in last_eval.items()})
    tracker.finish()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return RunResult(last_eval, history, train_seconds, trainable, run_dir)


def load_data(cfg: TrainConfig) -> Data:
    """The dataset's splits (rank 0 downloads and caches first), and the tasks this data can train."""
    splits, report = main_first(
        lambda: load_dataset(
            cfg.data,
            cache_dir=Path(cfg.cache_dir).expanduser(),
            split=cfg.split,
            seed=cfg.seed,
            max_bad_fraction=cfg.max_bad_fraction,
        )
    )
    log(report.summary())
    log(f"images: train {len(splits.train):,}  val {len(splits.val):,}  test {len(splits.test):,}")
    if not splits.train:
        raise UserError(f"the training split of {cfg.data} is empty")
    tasks = cfg.task_list
    if "qa" in tasks and not any(r.qa for r in splits.train):
        tasks = [t for t in tasks if t != "qa"]
        if not tasks:
            raise UserError(f"tasks=qa but {cfg.data} has no questions")
        log(f"{cfg.data} has no questions: training on captions only", "yellow")
    # Each epoch validates on a fixed subset (training/protocol.py: at most a quarter of a training epoch's cost);
    # the full protocol is --test's.
    val_records = splits.val[: cfg.eval_images or VAL_IMAGES_PER_EPOCH]
    return Data(splits, tasks, val_records)


def resume(cfg: TrainConfig, model, optimizer, scheduler, batches_per_epoch: int) -> Position:
    """--resume: the newest checkpoint's weights, optimizer, schedule, RNG and data position."""
    path = latest_checkpoint(Path(cfg.output_dir).expanduser(), cfg.encoder, cfg.top_k)
    weights, _ = read_checkpoint(path)
    model.load_trainable_state_dict(weights)
    state = read_training_state(path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    at = Position(state["epoch"], state["position"], state["global_step"], state["bad_steps"])
    if at.batch >= batches_per_epoch:  # the checkpoint closed its epoch
        at.epoch, at.batch = at.epoch + 1, 0
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    log(f"resumed {path.name} at epoch {at.epoch}, step {at.step}")
    return at


def make_tracker(cfg: TrainConfig, run_dir: Path, run_name: str):
    """W&B and metrics.jsonl on rank 0; the other torchrun processes log nothing."""
    if not DIST.is_main:
        return SilentTracker()
    return Tracker(
        run_dir,
        cfg.to_dict(),
        mode=cfg.wandb,
        project=cfg.wandb_project,
        entity=cfg.wandb_entity,
        run_name=run_name,
        group=cfg.wandb_group,
    )


def train_epoch(
    cfg: TrainConfig, train_model, optimizer, scheduler, samples, lengths, collate, features: torch.Tensor,
    at: Position, device: torch.device, autocast, tracker, checkpoint, validate=None,
) -> bool:  # fmt: skip
    """Train from `at` to the end of its epoch (or --max-steps, then return True), moving `at` with every step."""
    order = batch_order(lengths, cfg.batch_size, cfg.seed, at.epoch)
    progress = Progress(
        TextColumn(f"epoch {at.epoch}/{cfg.epochs}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (console.is_terminal and DIST.is_main),
    )
    with progress:
        task = progress.add_task("train", total=len(order), completed=at.batch, info="")
        t0, seen, seen_tokens = time.perf_counter(), 0, 0
        while at.batch < len(order):
            # One optimizer step = grad_accum micro-batches of one global batch each; with torchrun every process
            # takes its share (every world_size-th sample) of each global batch.
            micro = [
                collate(DIST.shard([samples[i] for i in indices]))
                for indices in order[at.batch : at.batch + cfg.grad_accum]
            ]
            # The loss is the mean over every target token of the step, on all processes together: each
            # micro-batch's mean is re-weighted by its share of the tokens (x world_size, since DDP averages).
            tokens = [int((b["labels"] != -100).sum()) for b in micro]
            step_tokens = DIST.sum(sum(tokens))
            loss_sum, finite = 0.0, True
            for k, batch in enumerate(micro):
                sync = k == len(micro) - 1 or not DIST.enabled  # all-reduce gradients once per step
                with autocast(), contextlib.nullcontext() if sync else train_model.no_sync():
                    loss = train_model(
                        batch["input_ids"].to(device),
                        batch["labels"].to(device),
                        features=features[batch["image_index"]].to(device),
                    )
                    weight = tokens[k] * DIST.world_size / step_tokens
                    if torch.isfinite(loss):
                        (loss * weight).backward()
                finite &= bool(torch.isfinite(loss))
                loss_sum += loss.item() * tokens[k] / step_tokens if finite else 0.0
                seen += len(batch["input_ids"]) * DIST.world_size
                seen_tokens += (
                    int(batch["attention_mask"].sum()) + len(batch["input_ids"]) * cfg.num_visual_tokens
                ) * DIST.world_size
            loss_sum = DIST.sum(loss_sum)
            if DIST.any(not finite):  # skip the step everywhere, count it, stop if it keeps happening
                optimizer.zero_grad(set_to_none=True)
                at.batch += len(micro)
                at.bad_steps += 1
                log(f"non-finite loss at step {at.step + 1}: step skipped ({at.bad_steps} in a row)", "yellow")
                if at.bad_steps >= MAX_BAD_STEPS:
                    raise UserError(
                        f"training diverged: {at.bad_steps} non-finite losses in a row; "
                        "lower --lr-adapter/--lr-qwen or use --precision fp32"
                    )
                continue
            at.bad_steps = 0
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip or float("inf")
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            at.step += 1
            at.batch += len(micro)  # the data position moves with the weights: a checkpoint resumes here

            elapsed = max(time.perf_counter() - t0, 1e-9)
            lrs = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}
            tracker.log(
                {
                    "train/loss": loss_sum,
                    "train/grad_norm": float(grad_norm),
                    "train/samples_per_s": seen / elapsed,
                    "train/tokens_per_s": seen_tokens / elapsed,
                    "epoch": at.epoch - 1 + at.batch / len(order),
                    **lrs,
                },
                step=at.step,
                to_wandb=at.step % cfg.log_every == 0,
            )
            speed = f"{seen / elapsed:,.0f} samples/s, {seen_tokens / elapsed:,.0f} tokens/s"
            progress.update(task, completed=at.batch, info=f"loss {loss_sum:.3f}  {speed}")
            if at.step % 50 == 0:
                log(f"epoch {at.epoch} step {at.step}: loss {loss_sum:.4f}, {speed}", "dim")
            if cfg.save_every and at.step % cfg.save_every == 0:
                checkpoint(False, {})
            if cfg.max_steps and at.step >= cfg.max_steps:
                return True
            if validate is not None and at.step % cfg.eval_every == 0 and at.batch < len(order):
                validate(shuffled_control=False)  # a point of the learning curve (the epoch's end evaluates anyway)
                train_model.train()
                t0, seen, seen_tokens = time.perf_counter(), 0, 0  # throughput without the evaluation's time
    return False


def run_test(cfg: TrainConfig, device: torch.device, autocast) -> dict:
    """--test: rebuild the model a checkpoint describes (training/restore.py), and evaluate it on the test split."""
    output_dir = Path(cfg.output_dir).expanduser()
    path = latest_checkpoint(output_dir, cfg.encoder, cfg.top_k) if cfg.checkpoint == "latest" else Path(cfg.checkpoint)
    log(f"testing {path}")
    model, tokenizer, meta = load_trained(path, device)
    trained = TrainConfig(**{**meta["train_config"], "mode": "test", "cache_dir": cfg.cache_dir})  # this machine's
    # The checkpoint's settings, with the evaluation flags typed on this command line (training/protocol.py).
    trained = evaluation_config(cfg, trained)
    if trained.ptb:  # a checkpoint trained with --ptb, on a machine without Java: say so before the slow work
        require_java()
    data = meta["data"]
    splits, report = main_first(
        lambda: load_dataset(
            data["source"],
            cache_dir=Path(cfg.cache_dir).expanduser(),
            split=data["split"],
            seed=data["seed"],
            max_bad_fraction=cfg.max_bad_fraction,
        )
    )
    log(report.summary())
    records = splits.test[: trained.eval_images] if trained.eval_images else splits.test
    test_protocol = protocol(trained, f"{data['split']} test", records, 2 * trained.batch_size)
    log(test_protocol.describe())
    features = image_features(trained, model, records, device)
    result = evaluate(
        model, records, features, tokenizer, tasks=data["tasks"], batch_size=2 * trained.batch_size,
        max_target_tokens=trained.max_target_tokens, max_new_tokens=trained.max_new_tokens,
        gallery_size=trained.gallery_size, num_samples=trained.num_samples, beams=trained.beams,
        length_penalty=trained.length_penalty, use_ptb=trained.ptb, device=device, autocast=autocast,
        seed=trained.seed, clip_reference=clip_zero_shot_inputs(trained, model, records, device), dist=DIST,
    )  # fmt: skip
    run_dir = Path(meta.get("run_dir") or output_dir / "runs" / f"test_{path.stem}")
    if DIST.is_main:
        results = {**result.metrics, "protocol": test_protocol.to_dict()}
        write_metrics(run_dir, {f"test/{path.stem}": results}, merge=True)
        log(format_metrics(f"test split ({len(records)} images)", result.metrics), "green")
        print_samples(result.samples)
    return result.metrics


# ---------------------------------------------------------------------------------------------------------------------
# 6. Reporting
# ---------------------------------------------------------------------------------------------------------------------


class SilentTracker:
    """The tracker of torchrun processes other than rank 0: they log nothing."""

    mode = "off (rank > 0)"

    def log(self, *args, **kwargs) -> None:
        pass

    log_table = summary = finish = log


def format_metrics(title: str, metrics: dict) -> str:
    keys = [k for k in metrics if not k.startswith("n_")]
    return title + ": " + ", ".join(f"{k} {metrics[k]:.3f}" for k in keys)


def log_samples(tracker: Tracker, samples: list[dict], step: int) -> None:
    from PIL import Image

    rows = []
    for s in samples:
        with Image.open(s["image"]) as image:
            rows.append([image.convert("RGB"), s["image"], s["generated"], " | ".join(s["references"]),
                         s.get("question", ""), s.get("answer", ""), s.get("expected", "")])  # fmt: skip
    columns = ["image", "path", "generated", "references", "question", "answer", "expected"]
    tracker.log_table("samples", columns, rows, step=step)


def print_samples(samples: list[dict]) -> None:
    for s in samples:
        console.print(f"[bold]{Path(s['image']).name}[/]  generated: [green]{s['generated']}[/]")
        console.print(f"    reference: {s['references'][0]}")
        if "question" in s:
            console.print(f"    Q: {s['question']}  A: [green]{s['answer']}[/]  (expected: {s['expected']})")


def write_metrics(run_dir: Path, metrics: dict, merge: bool = False) -> None:
    path = Path(run_dir) / "metrics.json"
    if merge and path.exists():
        metrics = {**json.loads(path.read_text()), **metrics}
    write_atomically(path, lambda p: p.write_text(json.dumps(metrics, indent=2)))


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
        if cfg.push_to_hub:  # share a checkpoint on the Hugging Face Hub (training/share.py); trains nothing
            console.print(push_checkpoint(cfg), soft_wrap=True, markup=False)
            return 0
        started = time.perf_counter()
        metrics = run(cfg).metrics
        if cfg.mode == "demo" and int(os.environ.get("RANK", "0")) == 0:
            report_demo(cfg, metrics, time.perf_counter() - started)
    except UserError as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def report_demo(cfg: TrainConfig, metrics: dict, seconds: float) -> None:
    """The demo's verdict: did it learn, and does it use the image?"""
    console.rule("demo result")
    rows = [
        ("CIDEr-D", metrics.get("cider_d"), metrics.get("shuffled/cider_d")),
        ("BLEU-4", metrics.get("bleu4"), metrics.get("shuffled/bleu4")),
        ("QA exact match", metrics.get("qa_exact_match"), metrics.get("shuffled/qa_exact_match")),
        ("image->text R@1", metrics.get("i2t_recall@1"), None),
        ("text->image R@1", metrics.get("t2i_recall@1"), None),
    ]
    console.print(f"{'held-out metric':<20}{'with its image':>16}{'images shuffled':>18}")
    for name, real, shuffled in rows:
        if real is not None:
            console.print(f"{name:<20}{real:>16.3f}{'' if shuffled is None else f'{shuffled:>18.3f}'}")
    console.print(f"finished in {seconds:.0f} s; checkpoints in {Path(cfg.output_dir).expanduser()}")


if __name__ == "__main__":
    sys.exit(main())
