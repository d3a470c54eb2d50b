"""Fail fast, then work: the checks that take seconds, run before the work that takes minutes or hours.

A training run first fetches and decodes its data set (Flickr30k: about 4 GB), then runs the frozen encoder over
every image, and only then builds the decoder. Without these checks a mistyped `--decoder` directory was reported
after all of that. `check_run(cfg)` looks at every argument that names something to load, without loading it:

- the decoder: `config.json` readable, `--top-k` within its blocks, the weights files present (for a local
  directory), and a tokenizer that loads with a known end-of-text token. A hub id is resolved to its config and
  tokenizer files only (from the Hugging Face cache, or a download of a few MB); its weights come later.
  `random-init:SOURCE` needs SOURCE's config and tokenizer, not its weights. `demo` and `demo-pretrained` are built
  by the run itself from the data, so there is nothing to check yet;
- the encoder weights: 'default', 'none', a pretrained tag the library knows, or an existing file
  (`vision.encoders.check_weights`);
- the data source's form: hf:OWNER/REPO, an existing folder or file, ... (`data.loading.check_source`);
- `--ptb`: Java on the PATH (pycocoevalcap's PTB tokenizer is a Java program), checked first;
- `--output-dir` and `--cache-dir`: folders, not files;
- `--init-from`: the checkpoint it names exists; with `--test`, the checkpoint to evaluate (`checkpoint_to_test`).
  Both go through `checkpoints.resolve.named_checkpoint`, the one resolver of every command: a file, a run folder,
  an output folder, `latest` or `hf:OWNER/NAME` (checked for its form only; it is fetched when it is read);
- `--resume`: a run to continue exists, trained with the same model settings (`run_to_resume`); `--resume auto`
  also accepts a named run that has no checkpoint yet (it starts).

Each failure is a `UserError`: one line, exit status 2 from train.py. Value ranges (`--top-k -1`,
`--max-bad-fraction 2`) are refused earlier still, when the configuration is built (`training/config.py`).

Read next: `training/run.py` (the work these checks come before), `checkpoints/store.py` (`find_run`).
"""

from __future__ import annotations

from pathlib import Path

from bridge.vlm import VLMConfig, check_lora, check_top_k
from checkpoints.resolve import checkpoint_file, named_checkpoint
from checkpoints.store import MODEL_KEYS, Run, differences, find_run, read_run, run_directory
from data.loading import check_source
from demo.decoders import demo_config
from errors import UserError
from metrics.captioning import require_java
from runtime.env import check_folder
from tiny_decoder import Qwen3Config
from training.config import TrainConfig
from training.decoders import BUILT_BY_THE_RUN, RANDOM_INIT
from vision.encoders import check_weights
from weights_loader import load_tokenizer, resolve_checkpoint, safetensors_files


def check_run(cfg: TrainConfig) -> None:
    """Raise `UserError` (one line) for the first argument of `cfg` that names something that cannot be loaded."""
    if cfg.evaluation.ptb:
        require_java()
    check_folder(cfg.output_dir, "--output-dir")
    check_folder(cfg.cache_dir, "--cache-dir")
    if cfg.mode == "test":  # the model, data and settings come from the checkpoint's sidecar
        checkpoint_to_test(cfg)
        return
    check_source(cfg.data)
    check_weights(cfg.model.encoder, cfg.model.encoder_weights)
    check_decoder(cfg.decoder, cfg.model)
    if cfg.init_from:
        checkpoint_to_init_from(cfg)
    if cfg.resume:
        run_to_resume(cfg)  # raises when there is nothing to resume, or it was trained with other model settings


def decoder_config(source: str) -> Qwen3Config:
    """The `Qwen3Config` of `--decoder` from its config.json alone (a hub id: config and tokenizer are fetched, not
    the weights), or the demo's architecture for the decoders the run builds from its data."""
    if source in BUILT_BY_THE_RUN:
        return demo_config()
    path = resolve_checkpoint(source.removeprefix(RANDOM_INIT), need="tokenizer")  # a directory as is
    return Qwen3Config.from_json_file(path / "config.json")


def check_decoder(source: str, model: VLMConfig) -> None:
    """The decoder `source` (a hub id or a directory) has a readable config with at least `top_k` blocks (and layers
    the LoRA settings fit), its weights files (for a directory), and a tokenizer with a known end-of-text token."""
    config = decoder_config(source)
    check_top_k(model.top_k, config.num_hidden_layers)
    check_lora(model, config)
    if source in BUILT_BY_THE_RUN:  # built from the data by the run: nothing on disk to check yet
        return
    random_init = source.startswith(RANDOM_INIT)
    source = source.removeprefix(RANDOM_INIT)
    path = resolve_checkpoint(source, need="tokenizer")  # found again where decoder_config found it
    if Path(source).expanduser().is_dir() and not random_init:
        safetensors_files(path)  # a hub id's weights are fetched when the decoder is loaded
    try:
        load_tokenizer(path)
    except UserError:
        raise
    except Exception as exc:  # the tokenizers library's parse errors
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"cannot read the tokenizer of decoder {source}: {path / 'tokenizer.json'}: {first_line}"
        ) from exc


def checkpoint_to_test(cfg: TrainConfig) -> str | Path:
    """--test: the checkpoint `--checkpoint` names (`checkpoints.resolve`); with `latest` (the default) or an output
    folder, the newest checkpoint of the newest run of this encoder and K, and of any other run setting typed."""
    return named_checkpoint(cfg.checkpoint, cfg.output_dir, cfg.selection(), "--checkpoint")


def checkpoint_to_share(cfg: TrainConfig) -> Path:
    """--push-to-hub: the checkpoint `--test` would evaluate, downloaded when it is on the hub; from a run, its newest
    checkpoint that closed an epoch (one saved mid-epoch by --save-every or Ctrl-C has no evaluation to show on the
    model card)."""
    return checkpoint_file(cfg.checkpoint, cfg.output_dir, cfg.selection(), "--checkpoint", closed_epoch=True)


# The settings that shape the bridge: --init-from's output folder or `latest` picks a run trained with these.
BRIDGE_KEYS = tuple(key for key in MODEL_KEYS if key != "top_k")


def checkpoint_to_init_from(cfg: TrainConfig) -> str | Path:
    """--init-from: the checkpoint it names (`checkpoints.resolve`); from an output folder or `latest`, the newest
    run whose bridge fits this one (its encoder, view, visual tokens, bridge width and decoder; K may differ: that is
    the two-stage recipe)."""
    return named_checkpoint(
        cfg.init_from, cfg.output_dir, {k: cfg.run_settings()[k] for k in BRIDGE_KEYS}, "--init-from"
    )


def run_to_resume(cfg: TrainConfig) -> Run | None:
    """--resume: the run `--run-name` names, or the newest run trained with this command's settings. With
    `--resume auto --run-name NAME`, None when that run has no checkpoint yet (a first start, say of a job that a
    scheduler will requeue); plain `--resume` refuses that in one line.

    A run whose model settings differ from the command's is refused, naming the difference: its checkpoint may even
    fit the model's tensor shapes (the hidden-view bridge is the same for 4 or 9 visual tokens) and silently continue
    another experiment. Other differences (say, a lower learning rate for the rest of the run) are allowed when the
    run is named, and `training/run.py` says which."""
    if not cfg.run_name:
        return find_run(cfg.output_dir, cfg.run_settings(), what="a checkpoint to resume", flag=None)
    directory = run_directory(cfg.output_dir, cfg.run_name)
    run = read_run(directory)
    if run is None:
        if cfg.resume == "auto":
            return None
        raise UserError(
            f"--resume --run-name {cfg.run_name}: no checkpoint in {directory} to resume (--resume auto starts the "
            "run when it has none)"
        )
    changed = differences(cfg.run_settings(), run.settings, MODEL_KEYS)
    if changed:
        raise UserError(
            f"cannot resume run {cfg.run_name} with other model settings: {', '.join(changed)} (this command's value "
            "first); resume with the run's settings, or start a new run with --init-from"
        )
    return run
