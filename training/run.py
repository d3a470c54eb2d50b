"""One training run, top to bottom: `run(config) -> RunResult`, the one entry point of train.py and the experiments.

    1. configuration and devices     check every input first (training/preflight.py), then the device and seed
    2. data                          the dataset's splits and the tasks it can train
    3. model                         decoder + tokenizer (training/decoders.py), frozen encoder + bridge (build_vlm)
    4. features                      the frozen encoder runs once per image; its features are cached on disk
    5. optimizer and schedule        AdamW in two groups, warm-up + cosine (training/optim.py)
    6. resume and tracking           --resume picks up the run's position; W&B and metrics.jsonl
    7. the loop                      one epoch at a time (training/loop.py), the step itself in training/step.py
    8. evaluation                    after each epoch on the fixed validation subset (evaluation/)
    9. checkpoints                   into the run's own folder, {output_dir}/runs/{run_name}/ (checkpoints/store.py)

`--test` (mode "test") skips 2-9: it rebuilds the model a checkpoint describes and evaluates it on the test split.

Under torchrun, `run` joins the process group itself (or takes a `Distributed` from its caller): every process
builds the same model, takes its share of each batch, and rank 0 alone logs and writes files.

References: nanoGPT's train.py (https://github.com/karpathy/nanoGPT) for the shape of the loop; LLaVA
(https://arxiv.org/abs/2304.08485) for the two-stage recipe (`--top-k 0`, then `--init-from` with `--top-k 3`).

Read next: `training/loop.py` and `training/step.py`, then `evaluation/evaluate.py`.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape
from torch.nn.parallel import DistributedDataParallel

from bridge import VisionLanguageModel, build_vlm
from checkpoints.restore import load_trained
from checkpoints.store import (
    checkpoint_stem,
    differences,
    prune_checkpoints,
    read_checkpoint,
    read_training_state,
    run_directory,
    save_checkpoint,
)
from data import Splits, VLMCollator, load_dataset, make_samples
from errors import UserError
from evaluation import VAL_IMAGES_PER_EPOCH, EvalSettings, evaluate, protocol
from evaluation.published import comparison_table, format_table
from lr_schedule import lr_lambda
from metrics.captioning import require_java
from runtime.devices import frozen_dtype, resolve_device
from runtime.distributed import Distributed, setup_distributed, teardown_distributed
from runtime.signals import Stopped, StopSignals, signal_name
from tiny_decoder.lora import parse_targets
from training.config import RUN_KEYS, TrainConfig, test_config
from training.decoders import BUILT_BY_THE_RUN, build_decoder_and_tokenizer
from training.loop import Job, Position, train_epoch
from training.memory import ENCODERS, Estimate, estimate_training, fits
from training.optim import build_optimizer
from training.preflight import check_run, checkpoint_to_init_from, checkpoint_to_test, decoder_config, run_to_resume
from training.space import check_space
from training.tracking import Log, SilentTracker, Tracker, format_metrics, log_samples, print_samples, write_metrics
from vision import FeatureCache, MappedFeatures, build_clip_text


@dataclass
class RunResult:
    """What a run returns to its caller (train.py, or the experiment runner in `experiments/`)."""

    metrics: dict[str, float]  # the last validation's metrics (with "shuffled/..." from the last epoch's control)
    history: list[dict] = field(default_factory=list)  # every validation: {"step", "epoch", **metrics}
    train_seconds: float = 0.0  # the training loop: optimizer steps and --eval-every's mid-epoch evaluations
    trainable_parameters: int = 0
    run_dir: Path | None = None
    optimizer_state_bytes: int = 0  # AdamW's moments, as allocated (measured from the optimizer at the end)
    steps: int = 0  # optimizer steps of the whole run (a resumed run's earlier ones included)


def run(cfg: TrainConfig, dist: Distributed | None = None) -> RunResult:
    """Train (or with `cfg.mode == "test"`, evaluate) one configuration. Without `dist`, joins torchrun's process
    group when launched by torchrun, and leaves it at the end."""
    if dist is not None:
        return _run(cfg, dist)
    dist = setup_distributed()
    try:
        return _run(cfg, dist)
    finally:
        teardown_distributed(dist)


def _run(cfg: TrainConfig, dist: Distributed) -> RunResult:
    # --- 1. configuration and devices ---------------------------------------------------------------------------------
    check_run(cfg)  # seconds: a bad decoder, encoder weights, data source or --ptb without Java fails before any work
    log = Log(dist.is_main)
    device, autocast = resolve_device(cfg.device, cfg.precision, dist.local_rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    log(f"mode={cfg.mode} encoder={cfg.model.encoder} view={cfg.model.view} top_k={cfg.model.top_k} device={device}")
    if cfg.mode == "test":
        return RunResult(run_test(cfg, device, autocast, dist, log))

    # --- 2. data ------------------------------------------------------------------------------------------------------
    splits, tasks = load_data(cfg, dist, log)
    # Each epoch validates on a fixed subset (evaluation/protocol.py: at most a quarter of a training epoch's cost);
    # the full protocol is --test's.
    val_records = splits.val[: cfg.eval_images or VAL_IMAGES_PER_EPOCH]

    # --- 3. model: decoder + tokenizer, frozen encoder, bridge ---------------------------------------------------------
    report_memory(cfg, device, autocast, log)  # the estimate of this run's peak, before any weight is loaded
    decoder, tokenizer, decoder_source = build_decoder_and_tokenizer(cfg, splits, device, dist, log)
    model = build_vlm(cfg.model, decoder, device, seed=cfg.seed)
    model.decoder.gradient_checkpointing = cfg.grad_checkpointing
    # Under bf16 autocast the frozen weights are stored in bf16 (half their memory, no cast on every use); what trains
    # stays fp32. In fp32 (the CPU's default) nothing changes.
    model.store_frozen_in(frozen_dtype(device, cfg.precision))
    if cfg.init_from:
        init_from = checkpoint_to_init_from(cfg)  # a file, a run, an output folder, latest or hf:OWNER/NAME
        load_init_weights(model, init_from)
        log(f"initialised the bridge{' and top blocks' if cfg.model.top_k else ''} from {init_from}")
    log("what trains:\n" + model.summary())
    settings = cfg.eval_settings(tasks)
    val_protocol = protocol(settings, f"{splits.scheme} validation", val_records)
    log(val_protocol.describe())

    # --- 4. features: the frozen encoder runs once per image ------------------------------------------------------------
    if dist.is_main:  # one line when the disks lack room for the features and checkpoints ahead (training/space.py)
        for line in check_space(cfg, model, [splits.train, val_records]):
            log(line, "yellow")
    train_features, val_features = dist.main_first(
        lambda: (
            image_features(cfg, model, splits.train, device),
            image_features(cfg, model, val_records, device),
        )
    )
    clip_reference = clip_zero_shot_inputs(cfg, model, val_records, device)
    samples = make_samples(splits.train, tasks)
    collate = VLMCollator(tokenizer.tokenizer, tokenizer.eos_id, tokenizer.pad_id, cfg.max_target_tokens)
    if cut := collate.count_cut(samples):  # they end without <|endoftext|> (data/batches.py); `data.inspect` shows more
        log(f"{cut:,} of {len(samples):,} training targets are longer than --max-target-tokens "
            f"{cfg.max_target_tokens} and are cut there, without an end-of-text token", "yellow")  # fmt: skip
    lengths = [len(s.target) + len(s.prompt) for s in samples]  # characters: a cheap proxy for bucketing
    batches_per_epoch = math.ceil(len(samples) / cfg.batch_size)

    # --- 5. optimizer and schedule --------------------------------------------------------------------------------------
    plan = plan_schedule(cfg, math.ceil(batches_per_epoch / cfg.grad_accum))  # --max-steps: the schedule's length
    optimizer = build_optimizer(model, cfg.lr_adapter, cfg.lr_qwen, cfg.weight_decay, device, lr_lora=cfg.lr_lora)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(plan.warmup_steps, plan.total_steps))
    log(plan.describe())

    # --- 6. resume and tracking: a run's files are its own folder's ------------------------------------------------------
    at, run_name = (
        Position(),
        cfg.run_name or f"{cfg.model.encoder}_top{cfg.model.top_k}_{datetime.now():%Y%m%d-%H%M%S}",
    )
    if cfg.resume:
        at, run_name = resume(cfg, model, optimizer, scheduler, batches_per_epoch, plan, log) or (at, run_name)
    run_dir = run_directory(cfg.output_dir, run_name)
    tracker = make_tracker(cfg, run_dir, run_name) if dist.is_main else SilentTracker()
    log(f"run directory {run_dir} (W&B {tracker.mode})")
    # Under torchrun, DDP averages the trainable parameters' gradients across processes in backward().
    train_model = (
        DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False
        )
        if dist.enabled
        else model
    )
    # The loop runs the plan's epochs (more than --epochs when --max-steps asks for more steps than they hold).
    job = Job(replace(cfg, epochs=plan.epochs), train_model, optimizer, scheduler, samples, lengths, collate,
              train_features, device, autocast, tracker, dist, log)  # fmt: skip
    # The split as made ("auto" resolved), with its sizes: --test and the model card read them.
    data_info = {"source": cfg.data, "split": splits.scheme, "seed": cfg.seed, "tasks": tasks,
                 "image_column": cfg.image_column, "caption_column": cfg.caption_column,
                 "images": dict(zip(("train", "val", "test"), splits.sizes(), strict=True))}  # fmt: skip

    saved = Position(step=-1)  # where the last checkpoint was written

    def checkpoint(complete: bool, metrics: dict) -> None:
        if not dist.is_main:  # every process holds the same weights; one writes them
            return
        meta = sidecar(cfg, model, decoder_source, tokenizer, data_info, at, complete, metrics, run_dir, plan)
        state = training_state(optimizer, scheduler, at)
        # The epoch's own name when it closes the epoch; mid-epoch, a name with the step, never the epoch's.
        stem = checkpoint_stem(at.epoch, cfg.model.encoder, cfg.model.top_k, step=None if complete else at.step)
        path = save_checkpoint(run_dir, stem, model.trainable_state_dict(), meta, state)  # one unit, or a UserError
        prune_checkpoints(run_dir, cfg.keep_checkpoints)  # this run's folder only
        saved.step = at.step
        log(f"checkpoint {path}")

    history: list[dict] = []
    samples_shown: list[dict] = []

    def validate(shuffled_control: bool) -> dict:
        # The shuffled-images control generates everything a second time, so only the last epoch runs it.
        result = evaluate(
            model, val_records, val_features, tokenizer, settings, shuffled_control=shuffled_control,
            device=device, autocast=autocast, clip_reference=clip_reference, dist=dist,
        )  # fmt: skip
        for line in result.notes:  # a metric that could not run, in one line each
            log(escape(line), "yellow")
        history.append({"step": at.step, "epoch": at.epoch - 1 + at.batch / batches_per_epoch, **result.metrics})
        tracker.log({f"val/{k}": v for k, v in result.metrics.items()}, step=at.step)
        log_samples(tracker, result.samples, at.step)
        samples_shown[:] = result.samples
        return result.metrics

    # --- 7. the loop: one epoch at a time, then 8. evaluation and 9. a checkpoint after each ------------------------------
    all_metrics: dict[str, dict] = {}
    last_eval: dict = {}
    train_seconds = 0.0
    model.train()  # the bridge and top blocks; the frozen encoder stays in eval mode (bridge/vlm.py)
    # SIGTERM, SIGUSR1 and Ctrl-C stop the run after the step it is in (runtime/signals.py): every process checks after
    # each step, together, and the run then writes a checkpoint at that step and exits with 128 + the signal.
    signals = StopSignals(ignore_after_stop=dist.enabled).install()
    job.stop = lambda: signals.requested(dist)
    try:
        while at.epoch <= plan.epochs:
            started = time.perf_counter()
            stopped = train_epoch(job, at, checkpoint, validate if cfg.eval_every and val_records else None)
            train_seconds += time.perf_counter() - started
            if job.stop():  # a signal during the epoch or its last step: no evaluation; a checkpoint, then exit
                break
            complete = at.batch >= batches_per_epoch
            # With --eval-every, a run that --max-steps stops early is evaluated too: its curve gets a last point.
            if (complete or (stopped and cfg.eval_every)) and val_records:
                last_eval = validate(shuffled_control=at.epoch == plan.epochs or stopped)
                all_metrics[f"epoch_{at.epoch}/val"] = {**last_eval, "protocol": val_protocol.to_dict()}
                log(format_metrics(f"epoch {at.epoch} validation", last_eval), "green")
            checkpoint(complete, last_eval if complete else {})
            if stopped:
                log(f"stopped at --max-steps {cfg.max_steps}")
                break
            at.epoch, at.batch = at.epoch + 1, 0
        if signals.signum:  # still under the handlers: a second SIGTERM while saving changes nothing
            stop_after_signal(signals, at, saved, lambda: checkpoint(False, {}), run_dir, all_metrics, cfg, tracker,
                              dist, log)  # fmt: skip
    except KeyboardInterrupt:  # a second Ctrl-C: at once, without a checkpoint (the last complete one stands)
        tracker.finish(exit_code=130)
        raise
    finally:
        signals.restore()

    if dist.is_main:
        write_metrics(run_dir, all_metrics, merge=cfg.resume)
        print_samples(log, samples_shown)  # the last evaluation's sample images: generated/reference captions, answers
    tracker.summary({f"final/{k}": v for k, v in last_eval.items()})
    tracker.finish()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state_bytes = sum(t.numel() * t.element_size() for state in optimizer.state.values()
                      for t in state.values() if torch.is_tensor(t))  # fmt: skip
    return RunResult(last_eval, history, train_seconds, trainable, run_dir, state_bytes, at.step)


# ---------------------------------------------------------------------------------------------------------------------
# The named steps of `run`, in the order it calls them
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The run's length in optimizer steps, and the warm-up + cosine learning-rate schedule planned over it.

    Without `--max-steps` the run trains every step of `--epochs` epochs. With it, `--max-steps` is the run's step
    budget, as in transformers' Trainer (`max_steps` "overrides num_train_epochs") and nanoGPT (`max_iters`): the
    schedule decays over those steps, so a short run ends at the schedule's floor rather than at a high learning rate,
    and the epochs are as many as those steps need (fewer than `--epochs`, or more). The sidecar records it."""

    total_steps: int  # the schedule's length: the warm-up, then the cosine decay to 10% at this step
    warmup_steps: int
    epochs: int  # the epochs the loop runs to reach total_steps
    set_by: str  # "epochs" or "max_steps"

    def describe(self) -> str:
        by = "--max-steps" if self.set_by == "max_steps" else "--epochs"
        steps = f"schedule: {self.total_steps:,} optimizer steps ({by}; {self.epochs} epoch(s))"
        if self.warmup_steps >= self.total_steps:
            return f"{steps}, all inside the linear warm-up of --warmup-steps {self.warmup_steps:,}: no decay"
        return f"{steps}: linear warm-up over {self.warmup_steps:,}, then cosine decay to 10% at the last step"

    def to_dict(self) -> dict:
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "epochs": self.epochs,
                "set_by": self.set_by}  # fmt: skip


def plan_schedule(cfg: TrainConfig, steps_per_epoch: int) -> Schedule:
    """The run's `Schedule`: `--epochs` epochs of `steps_per_epoch` optimizer steps, or `--max-steps` steps."""
    if cfg.max_steps is None:
        return Schedule(steps_per_epoch * cfg.epochs, cfg.warmup_steps, cfg.epochs, "epochs")
    return Schedule(cfg.max_steps, cfg.warmup_steps, math.ceil(cfg.max_steps / steps_per_epoch), "max_steps")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(cfg: TrainConfig, dist: Distributed, log: Log) -> tuple[Splits, list[str]]:
    """The dataset's splits (rank 0 downloads and caches first), and the tasks this data can train."""
    splits, report = dist.main_first(
        lambda: load_dataset(
            cfg.data,
            cache_dir=Path(cfg.cache_dir).expanduser(),
            split=cfg.split,
            seed=cfg.seed,
            max_bad_fraction=cfg.max_bad_fraction,
            image_column=cfg.image_column,
            caption_column=cfg.caption_column,
        )
    )
    log(report.summary())
    log(f"images: train {len(splits.train):,}  val {len(splits.val):,}  test {len(splits.test):,}  "
        f"({describe_scheme(splits.scheme, cfg.split)})")  # fmt: skip
    if not splits.train:
        raise UserError(f"the training split of {cfg.data} is empty")
    tasks = cfg.task_list
    if "qa" in tasks and not any(r.qa for r in splits.train):
        tasks = [t for t in tasks if t != "qa"]
        if not tasks:
            raise UserError(f"tasks=qa but {cfg.data} has no questions")
        log(f"{cfg.data} has no questions: training on captions only", "yellow")
    return splits, tasks


def describe_scheme(scheme: str, asked: str) -> str:
    """How the images were split, for the log: "karpathy split (the data's own labels)", "random split (80/10/10)"."""
    how = "the data's own labels" if scheme == "karpathy" else "80/10/10 by image from the seed"
    chosen = ", chosen by --split auto" if asked == "auto" else ""
    return f"{scheme} split: {how}{chosen}"


def report_memory(cfg: TrainConfig, device: torch.device, bf16: bool, log: Log) -> Estimate | None:
    """Log training/memory.py's estimate of this run's peak memory on its device, from the decoder's config.json
    alone (before any weight is loaded), and one warning line when the detected card holds less. None for the demo's
    tiny pieces, which the estimator does not model (and which fit anywhere)."""
    if cfg.model.encoder not in ENCODERS or cfg.decoder in BUILT_BY_THE_RUN:
        return None
    m = cfg.model
    estimate = estimate_training(
        decoder_config(cfg.decoder), batch_size=cfg.batch_size,
        num_visual_tokens=m.num_visual_tokens, max_target_tokens=cfg.max_target_tokens, top_k=m.top_k,
        lora_rank=m.lora_rank, lora_targets=parse_targets(m.lora_targets), grad_checkpointing=cfg.grad_checkpointing,
        precision="bf16" if bf16 else "fp32", encoder=m.encoder, view=m.view, bridge_hidden_dim=m.bridge_hidden_dim,
        beams=cfg.evaluation.beams, max_new_tokens=cfg.evaluation.max_new_tokens, device=device.type,
    )  # fmt: skip
    log(f"memory estimate (training/memory.py, docs/memory.md): {estimate.describe()}")
    if device.type == "cuda":
        capacity = torch.cuda.get_device_properties(device).total_memory
        if not fits(estimate, capacity):
            log(
                f"warning: this run is estimated to need {estimate.peak() / 2**30:.1f} GiB and the GPU has "
                f"{capacity / 2**30:.1f} GiB: it will likely run out of memory; lower --batch-size, add "
                "--grad-checkpointing, or train fewer blocks (--top-k, --lora-rank); python -m bench.memory compares",
                "yellow",
            )
    return estimate


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


def image_features(
    cfg: TrainConfig, model: VisionLanguageModel, records, device: torch.device, view: str | None = None
) -> MappedFeatures:
    """Frozen-encoder features of `records`, computed once, cached on disk and read from it a batch at a time
    (`features[batch_indices]` is a tensor of those rows; see vision/cache.py and vision/mapped.py)."""
    cache = FeatureCache(Path(cfg.cache_dir).expanduser() / "features")
    paths = [r.path for r in records]
    features, valid = cache.features(
        model.encoder, paths, view or cfg.model.view, device=device, num_workers=cfg.num_workers
    )
    if not valid.all():  # data loading already dropped unreadable images; this is a last guard
        raise UserError(f"{int((~valid).sum())} images could not be encoded; see the cache manifest in {cache.root}")
    return features


def clip_zero_shot_inputs(cfg: TrainConfig, model: VisionLanguageModel, records, device: torch.device):
    """With the CLIP encoder: its text tower and the image embeddings, for CLIP's own retrieval as a reference row."""
    if cfg.model.encoder != "clip" or not records:
        return None
    text_tower = build_clip_text(cfg.model.encoder_weights).to(device)
    return text_tower, image_features(cfg, model, records, device, view="pooled").tensor()  # [N, 512], small


def resume(
    cfg: TrainConfig, model, optimizer, scheduler, batches_per_epoch: int, plan: Schedule, log: Log
) -> tuple[Position, str] | None:
    """--resume: the run's newest checkpoint's weights, optimizer, schedule, RNG and data position, and its name (the
    run goes on in its own folder). None with `--resume auto` when the run has no checkpoint yet: a first start."""
    found = run_to_resume(cfg)  # checked before any work too (check_run); it may have gained a checkpoint since
    if found is None:
        log(f"--resume auto: run {cfg.run_name} has no checkpoint yet; starting it", "yellow")
        return None
    for change in differences(
        cfg.run_settings(), found.settings, RUN_KEYS
    ):  # the model's were refused by run_to_resume
        log(f"resuming {found.name} with {change}", "yellow")
    path = found.latest
    weights, meta = read_checkpoint(path)
    planned = meta.get("schedule", {}).get("total_steps")
    if planned is not None and planned != plan.total_steps:  # e.g. a longer --max-steps: the decay is replanned
        log(f"the schedule of {found.name} planned {planned:,} steps; it goes on planned for {plan.total_steps:,}",
            "yellow")  # fmt: skip
    model.load_trainable_state_dict(weights)
    state = read_training_state(path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    at = Position(state["epoch"], state["position"], state["global_step"], state["bad_steps"])
    # A checkpoint that closed its epoch starts the next one. One written after the epoch's last step but before its
    # evaluation (a signal) stays in it: the loop has no step left, and evaluates and closes the epoch.
    if at.batch >= batches_per_epoch and meta.get("complete_epoch", True):
        at.epoch, at.batch = at.epoch + 1, 0
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    log(f"resumed {found.name}/{path.name} at epoch {at.epoch}, step {at.step}")
    return at, found.name


def make_tracker(cfg: TrainConfig, run_dir: Path, run_name: str) -> Tracker:
    """W&B and metrics.jsonl, on rank 0."""
    return Tracker(
        run_dir,
        cfg.to_dict(),
        mode=cfg.wandb,
        project=cfg.wandb_project,
        entity=cfg.wandb_entity,
        run_name=run_name,
        group=cfg.wandb_group,
    )


def sidecar(cfg, model, decoder_source, tokenizer, data_info, at: Position, complete, metrics, run_dir,
            plan: Schedule) -> dict:  # fmt: skip
    """What a checkpoint's `.json` says: enough to rebuild the model without the command line (checkpoints/)."""
    return {
        "format": 1,
        "epoch": at.epoch,
        "global_step": at.step,
        "complete_epoch": complete,
        "schedule": plan.to_dict(),  # how long the run is, and what said so (--epochs or --max-steps)
        "model": model.config.to_dict(),
        "decoder": {"source": decoder_source, "config": model.decoder.config.to_dict()},
        "tokenizer": {"source": decoder_source, "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id},
        "data": data_info,
        "train_config": cfg.to_dict(),
        "run_keys": list(RUN_KEYS),  # which of its settings say what the run trains (checkpoints/store.py: find_run)
        "metrics": metrics,
        "run_dir": str(run_dir),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def training_state(optimizer, scheduler, at: Position) -> dict:
    """Everything besides the weights that an exact resume needs (tensors and plain values only)."""
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": at.epoch,
        "position": at.batch,  # micro-batches of this epoch already consumed
        "global_step": at.step,
        "bad_steps": at.bad_steps,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def stop_after_signal(signals: StopSignals, at: Position, saved: Position, checkpoint, run_dir: Path,
                      all_metrics: dict, cfg: TrainConfig, tracker, dist: Distributed, log: Log) -> None:  # fmt: skip
    """A signal stopped the loop after a finished step: write a checkpoint at that step (unless one was just written
    there), the evaluations so far to metrics.json, mark the W&B run preempted (SIGTERM, SIGUSR1) or stopped (Ctrl-C),
    and raise `Stopped`: train.py exits with 128 + the signal's number. `--resume` continues from here exactly."""
    assert signals.signum is not None
    log(f"{signal_name(signals.signum)}: stopping after step {at.step}; writing a checkpoint to resume from", "yellow")
    if saved.step != at.step:
        checkpoint()
    if dist.is_main and all_metrics:
        write_metrics(run_dir, all_metrics, merge=bool(cfg.resume))
    tracker.stopped(signals.status, preempted=signals.signum != signal.SIGINT)
    dist.barrier()  # no process leaves before rank 0 has written: torchrun stops the others when one exits
    raise Stopped(signals.signum)


# ---------------------------------------------------------------------------------------------------------------------
# --test: evaluate a checkpoint on the test split
# ---------------------------------------------------------------------------------------------------------------------


def run_test(cfg: TrainConfig, device: torch.device, autocast, dist: Distributed, log: Log) -> dict:
    """Rebuild the model a checkpoint describes (checkpoints/restore.py), and evaluate it on the test split."""
    path = checkpoint_to_test(cfg)
    log(f"testing {path}")
    model, tokenizer, meta = load_trained(path, device)
    model.store_frozen_in(frozen_dtype(device, cfg.precision))  # as in training: bf16 under bf16 autocast
    trained = TrainConfig.from_dict(
        {**meta["train_config"], "mode": "test", "cache_dir": cfg.cache_dir}
    )  # this machine's
    # The checkpoint's settings, with the evaluation flags typed on this command line (evaluation/protocol.py).
    trained = test_config(cfg, trained)
    if (
        trained.evaluation.ptb
    ):  # a checkpoint trained with --ptb, on a machine without Java: say so before the slow work
        require_java()
    data = meta["data"]
    splits, report = dist.main_first(
        lambda: load_dataset(
            data["source"],
            cache_dir=Path(cfg.cache_dir).expanduser(),
            split=data["split"],
            seed=data["seed"],
            max_bad_fraction=cfg.max_bad_fraction,
            image_column=data.get("image_column"),
            caption_column=data.get("caption_column"),
        )
    )
    log(report.summary())
    records = splits.test[: trained.eval_images] if trained.eval_images else splits.test
    settings: EvalSettings = trained.eval_settings(data["tasks"])
    test_protocol = protocol(settings, f"{splits.scheme} test", records)
    log(test_protocol.describe())
    features = image_features(trained, model, records, device)
    clip_reference = clip_zero_shot_inputs(trained, model, records, device)
    result = evaluate(
        model, records, features, tokenizer, settings, device=device, autocast=autocast, clip_reference=clip_reference,
        dist=dist,
    )  # fmt: skip
    stem = Path(path).stem
    run_dir = Path(meta.get("run_dir") or run_directory(cfg.output_dir, f"test_{stem}"))
    if dist.is_main:
        for line in result.notes:  # METEOR without Java, SPICE that cannot run: one line each, the rest is scored
            log(escape(line), "yellow")
        # On Karpathy's test split of COCO or Flickr30k: our row under the published ones (evaluation/published.py).
        table = comparison_table(
            report.dataset, splits.scheme, result.metrics, test_protocol, encoder=trained.model.encoder,
            decoder=trained.decoder, top_k=trained.model.top_k, decoder_blocks=model.decoder.config.num_hidden_layers,
            train_images=len(splits.train), epochs=meta["epoch"],
        )  # fmt: skip
        entries = {f"test/{stem}": {**result.metrics, "protocol": test_protocol.to_dict()}}
        if table is not None:
            entries[f"test/{stem}/published"] = table  # a sibling key: the model card lists the metrics alone
        write_metrics(run_dir, entries, merge=True)
        log(format_metrics(f"test split ({len(records)} images)", result.metrics), "green")
        if table is not None:
            log.console.print(format_table(table), markup=False, soft_wrap=True)  # a table: never wrapped
        print_samples(log, result.samples)
    return result.metrics
