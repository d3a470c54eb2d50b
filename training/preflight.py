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
- `--init-from`: the checkpoint it names exists; with `--test`, the checkpoint to evaluate (`checkpoint_to_test`).
  A checkpoint on the hub (`hf:OWNER/NAME`) is checked for its form only; it is fetched when it is read;
- `--resume`: a run to continue exists, trained with the same model settings (`run_to_resume`); `--resume auto`
  also accepts a named run that has no checkpoint yet (it starts).

Each failure is a `UserError`: one line, exit status 2 from train.py. Value ranges (`--top-k -1`,
`--max-bad-fraction 2`) are refused earlier still, when the configuration is built (`training/config.py`).

Read next: `training/run.py` (the work these checks come before), `checkpoints/store.py` (`find_run`).
"""

from __future__ import annotations

from pathlib import Path

from bridge.vlm import check_top_k
from checkpoints.share import complete_epoch
from checkpoints.store import (
    HUB_PREFIX,
    MODEL_KEYS,
    Run,
    checkpoint_path,
    differences,
    find_run,
    is_hub_checkpoint,
    read_run,
    run_directory,
)
from data.loading import check_source
from errors import UserError
from metrics.captioning import require_java
from tiny_decoder import Qwen3Config
from training.config import TrainConfig
from training.decoders import BUILT_BY_THE_RUN, RANDOM_INIT
from vision.encoders import check_weights
from weights_loader import load_tokenizer, resolve_checkpoint, safetensors_files


def check_run(cfg: TrainConfig) -> None:
    """Raise `UserError` (one line) for the first argument of `cfg` that names something that cannot be loaded."""
    if cfg.ptb:
        require_java()
    if cfg.mode == "test":  # the model, data and settings come from the checkpoint's sidecar
        checkpoint_to_test(cfg)
        return
    check_source(cfg.data)
    check_weights(cfg.encoder, cfg.encoder_weights)
    check_decoder(cfg.decoder, cfg.top_k)
    if cfg.init_from:
        _check_checkpoint(cfg.init_from, "--init-from")
    if cfg.resume:
        run_to_resume(cfg)  # raises when there is nothing to resume, or it was trained with other model settings


def check_decoder(source: str, top_k: int) -> None:
    """The decoder `source` (a hub id or a directory) has a readable config with at least `top_k` blocks, its weights
    files (for a directory), and a tokenizer with a known end-of-text token."""
    if source in BUILT_BY_THE_RUN:
        return
    random_init = source.startswith(RANDOM_INIT)
    source = source.removeprefix(RANDOM_INIT)
    path = resolve_checkpoint(source, need="tokenizer")  # a directory as is; a hub id: config and tokenizer only
    config = Qwen3Config.from_json_file(path / "config.json")
    check_top_k(top_k, config.num_hidden_layers)
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
    """--test and --push-to-hub: `--checkpoint PATH` (or hf:OWNER/NAME), or with 'latest' the newest checkpoint of
    the newest run of this encoder and K (and of any other run setting typed; `checkpoints.store.find_run`)."""
    if cfg.checkpoint == "latest":
        return find_run(cfg.output_dir, cfg.selection()).latest
    _check_checkpoint(cfg.checkpoint, "--checkpoint")
    return cfg.checkpoint


def checkpoint_to_share(cfg: TrainConfig) -> Path:
    """--push-to-hub: `--checkpoint PATH`, or the newest checkpoint that closed its epoch of the run `--test` would
    pick (one saved mid-epoch by --save-every or Ctrl-C has no evaluation to show on the model card)."""
    if cfg.checkpoint != "latest":
        return checkpoint_path(cfg.checkpoint)
    run = find_run(cfg.output_dir, cfg.selection())
    complete = [p for p in run.checkpoints if complete_epoch(p)]
    if not complete:
        raise UserError(
            f"run {run.name} has no checkpoint that closed an epoch (only mid-epoch saves); finish an epoch, or pick "
            "one with --checkpoint PATH"
        )
    return complete[-1]


def run_to_resume(cfg: TrainConfig) -> Run | None:
    """--resume: the run `--run-name` names, or the newest run trained with this command's settings. With
    `--resume auto --run-name NAME`, None when that run has no checkpoint yet (a first start, say of a job that a
    scheduler will requeue); plain `--resume` refuses that in one line.

    A run whose model settings differ from the command's is refused, naming the difference: its checkpoint may even
    fit the model's tensor shapes (the hidden-view bridge is the same for 4 or 9 visual tokens) and silently continue
    another experiment. Other differences (say, a lower learning rate for the rest of the run) are allowed when the
    run is named, and `training/run.py` says which."""
    if not cfg.run_name:
        return find_run(cfg.output_dir, cfg.run_settings(), what="a checkpoint to resume")
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


def _check_checkpoint(spec: str, flag: str) -> None:
    """A local checkpoint exists with its sidecar; a hub checkpoint (hf:OWNER/NAME) has a valid repo id."""
    if is_hub_checkpoint(spec):
        import hub  # the hub client, only when a hub checkpoint is named

        hub.check_repo_id(spec.removeprefix(HUB_PREFIX), label=f"{flag} {spec!r}", form=f"{HUB_PREFIX}OWNER/NAME")
        return
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such checkpoint file (a .safetensors file written by train.py)")
    if not path.with_suffix(".json").is_file():
        raise UserError(f"{flag} {path}: no sidecar {path.with_suffix('.json').name}; it is incomplete or not ours")
