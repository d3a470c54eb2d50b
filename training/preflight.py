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
- `--init-from` and `--resume`: the checkpoint they name exists; with `--test`, the checkpoint to evaluate. A
  checkpoint on the hub (`hf:OWNER/NAME`) is checked for its form only; it is fetched when it is read.

Each failure is a `UserError`: one line, exit status 2 from train.py. Value ranges (`--top-k -1`,
`--max-bad-fraction 2`) are refused earlier still, when the configuration is built (`training/config.py`).
"""

from __future__ import annotations

from pathlib import Path

from data.loading import check_source
from errors import UserError
from metrics.captioning import require_java
from tiny_decoder import Qwen3Config
from training.checkpoint import HUB_PREFIX, is_hub_checkpoint, latest_checkpoint
from training.config import TrainConfig
from training.pretrain import DEMO_PRETRAINED
from vision.encoders import check_weights
from weights_loader import load_tokenizer, resolve_checkpoint, safetensors_files

# Decoders that the run builds itself from the training data (training/demo.py, training/pretrain.py).
BUILT_BY_THE_RUN = ("demo", DEMO_PRETRAINED)
RANDOM_INIT = "random-init:"  # train.py's --decoder random-init:SOURCE: SOURCE's config and tokenizer, random weights


def check_run(cfg: TrainConfig) -> None:
    """Raise `UserError` (one line) for the first argument of `cfg` that names something that cannot be loaded."""
    output_dir = Path(cfg.output_dir).expanduser()
    if cfg.ptb:
        require_java()
    if cfg.mode == "test":  # the model, data and settings come from the checkpoint's sidecar
        check_checkpoint(output_dir, cfg)
        return
    check_source(cfg.data)
    check_weights(cfg.encoder, cfg.encoder_weights)
    check_decoder(cfg.decoder, cfg.top_k)
    if cfg.init_from:
        _check_checkpoint(cfg.init_from, "--init-from")
    if cfg.resume:
        latest_checkpoint(output_dir, cfg.encoder, cfg.top_k)  # raises when there is nothing to resume


def check_decoder(source: str, top_k: int) -> None:
    """The decoder `source` (a hub id or a directory) has a readable config with at least `top_k` blocks, its weights
    files (for a directory), and a tokenizer with a known end-of-text token."""
    if source in BUILT_BY_THE_RUN:
        return
    random_init = source.startswith(RANDOM_INIT)
    source = source.removeprefix(RANDOM_INIT)
    path = resolve_checkpoint(source, need="tokenizer")  # a directory as is; a hub id: config and tokenizer only
    config = Qwen3Config.from_json_file(path / "config.json")
    if top_k > config.num_hidden_layers:
        raise UserError(f"top_k={top_k} is invalid; the decoder has {config.num_hidden_layers} blocks")
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


def check_checkpoint(output_dir: Path, cfg: TrainConfig) -> None:
    """--test: the checkpoint to evaluate ('latest' of this encoder and K, or a path) exists with its sidecar."""
    if cfg.checkpoint == "latest":
        latest_checkpoint(output_dir, cfg.encoder, cfg.top_k)
    else:
        _check_checkpoint(cfg.checkpoint, "--checkpoint")


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
