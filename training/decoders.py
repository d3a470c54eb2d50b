"""Where a run's decoder and tokenizer come from: `--decoder` by name.

- a hub id (`Qwen/Qwen3-0.6B-Base`, the default) or a local directory: the official safetensors, loaded with strict
  key and shape checks (`weights_loader.py`);
- `demo`: the demo's tiny Qwen3 (3 blocks, d=128) with random weights and a byte-level BPE trained on the data's
  text (`demo/decoders.py`);
- `demo-pretrained`: the same architecture pretrained on the training split's text alone (`demo/pretrain.py`),
  the offline stand-in for Qwen3-0.6B-Base: with `--top-k 0` the bridge learns to steer a frozen language model
  that has never seen an image;
- `random-init:SOURCE`: SOURCE's architecture and tokenizer with random weights, the control that shows what
  pretrained weights bring.

The decoders a run makes itself are saved in the hub's layout beside the runs, then loaded back like any
checkpoint: `--test`, `--resume` and caption.py rebuild them from that directory, and every torchrun process loads
the same one.

Read next: `bridge/vlm.py` (`build_vlm` joins this decoder to the encoder and the bridge).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from data import Splits
from demo.decoders import demo_decoder, demo_tokenizer
from demo.pretrain import DEMO_PRETRAINED, pretrained_demo_lm
from runtime.distributed import Distributed
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from training.config import TrainConfig
from weights_loader import TextTokenizer, load_qwen3, load_tokenizer, resolve_checkpoint, save_qwen3

RANDOM_INIT = "random-init:"  # --decoder random-init:SOURCE: SOURCE's config and tokenizer, random weights
BUILT_BY_THE_RUN = ("demo", DEMO_PRETRAINED)  # decoders made from the training data: nothing to check before


def build_decoder_and_tokenizer(
    cfg: TrainConfig, splits: Splits, device: torch.device, dist: Distributed, log: Callable[[str], None]
) -> tuple[Qwen3ForCausalLM, TextTokenizer, str]:
    """The decoder, its tokenizer, and its source (a hub id or the directory it was loaded from)."""
    if cfg.decoder == DEMO_PRETRAINED:
        cache_dir = Path(cfg.cache_dir).expanduser().resolve()
        directory = dist.main_first(
            lambda: pretrained_demo_lm(splits.train, splits.val, cache_dir, seed=cfg.seed, log=log)
        )
    elif cfg.decoder == "demo":
        directory = Path(cfg.output_dir).expanduser().resolve() / f"demo_decoder_seed{cfg.seed}"
        dist.main_first(lambda: save_demo_decoder(splits, cfg.seed, directory) if dist.is_main else None)
    elif cfg.decoder.startswith(RANDOM_INIT):
        # SOURCE's own weights are not fetched: only its config.json and tokenizer files.
        source = cfg.decoder.removeprefix(RANDOM_INIT)
        directory = Path(cfg.output_dir).expanduser().resolve() / f"random_init_{Path(source).name}_seed{cfg.seed}"
        path = resolve_checkpoint(source, need="tokenizer")  # config.json and the tokenizer files
        make = dist.is_main and not directory.exists()
        dist.main_first(lambda: save_random_decoder(path, cfg.seed, directory) if make else None)
        log(f"random-init decoder with the layout of {source}: {directory}")
    else:
        # --top-k was checked against the decoder's blocks before any work (check_run, training/preflight.py).
        log(f"loading decoder {cfg.decoder}")
        path = resolve_checkpoint(cfg.decoder)  # downloads once from the hub, or checks the local directory
        return load_qwen3(path, device=device), load_tokenizer(path), cfg.decoder
    return load_qwen3(directory, device=device), load_tokenizer(directory), str(directory)


def save_demo_decoder(splits: Splits, seed: int, directory: Path) -> None:
    """The demo's random tiny decoder and its BPE tokenizer, saved in the hub's layout."""
    tokenizer = demo_tokenizer(splits.train + splits.val + splits.test)
    save_qwen3(demo_decoder(tokenizer.vocab_size, tokenizer.eos_id, seed=seed), directory)
    tokenizer.tokenizer.save(str(directory / "tokenizer.json"))
    special = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(special))


def save_random_decoder(source: Path, seed: int, directory: Path) -> None:
    """`source`'s architecture with random weights drawn from `seed`, and `source`'s tokenizer files."""
    torch.manual_seed(seed)
    save_qwen3(Qwen3ForCausalLM(Qwen3Config.from_json_file(source / "config.json")), directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        if (source / name).exists():
            shutil.copyfile(source / name, directory / name)
