"""Load the official Qwen3 checkpoint (config, safetensors, tokenizer) into our hand-written decoder.

    model = load_qwen3("Qwen/Qwen3-0.6B-Base")          # from the Hugging Face Hub (cached under HF_HOME)
    model = load_qwen3("/path/to/Qwen3-0.6B-Base")      # or from a local directory with the same files
    tok = load_tokenizer("Qwen/Qwen3-0.6B-Base")

The loader is strict, because a silently skipped or misplaced tensor gives a model that runs and talks nonsense:
- every tensor in the checkpoint must map to a parameter of ours (an unknown key is an error naming it);
- every parameter must be filled (a missing key is an error naming it);
- shapes must agree (the error names the key and both shapes), and every tensor must be finite;
- a tied checkpoint that also stores `lm_head.weight` must store a copy of the embedding, which is then dropped.

The weights stream in one tensor at a time from memory-mapped safetensors into a model built on the `meta` device
(no memory) and materialised once, so loading never holds two copies of the weights.

References:
- safetensors format: https://huggingface.co/docs/safetensors
- huggingface_hub downloads: https://huggingface.co/docs/huggingface_hub/guides/download

Read next: `training/decoders.py` (a run picks these weights or the demo's), `tests/test_decoder.py` (parity).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from tokenizers import Tokenizer

from errors import UserError
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM

DEFAULT_REPO = "Qwen/Qwen3-0.6B-Base"
END_OF_TEXT = "<|endoftext|>"  # the end of every caption and answer this project trains (and of a Base model's text)
# What we fetch from the hub: the config, the weights (one file or shards with their index), the tokenizer.
HUB_FILES = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
]

# Our module names are transformers' names, so checkpoint keys map to parameter names unchanged. Any rename would
# go in this one table (checkpoint key prefix -> our prefix); Qwen3 needs none.
WEIGHT_RENAMES: dict[str, str] = {}

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------------------------------


def resolve_checkpoint(source: str | Path, *, need: str = "weights", instead: str = "--decoder DIR") -> Path:
    """A local directory as is, or a hub repo id downloaded (only the files we need) into the HF cache.

    Honours HF_TOKEN (private or gated repos), HF_HOME (cache location) and HF_HUB_OFFLINE=1 (cache only). `instead`
    is how the command takes a local copy, for the error line (train.py's and caption.py's `--decoder DIR`).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _REPO_ID.match(str(source)):
        raise UserError(
            f"checkpoint not found: '{source}' is neither a directory nor a hub repo id like {DEFAULT_REPO}"
        )
    patterns = HUB_FILES if need == "weights" else ["config.json", "generation_config.json", "tokenizer*.json"]
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(source), allow_patterns=patterns))
    except Exception as e:  # no network, offline mode without a cache, unknown or gated repo, ...
        raise UserError(
            f"could not fetch {', '.join(p for p in patterns if '*' not in p)} and the weights of '{source}' from the "
            f"Hugging Face Hub ({type(e).__name__}); on a machine with network run "
            f"`hf download {source} --local-dir DIR` and pass DIR instead of the repo id (e.g. {instead})"
        ) from None


def safetensors_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory: one `model.safetensors`, or the shards its index lists."""
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [path / name for name in sorted(set(weight_map.values()))]
    elif (path / "model.safetensors").exists():
        files = [path / "model.safetensors"]
    else:
        raise UserError(f"no model.safetensors or model.safetensors.index.json in {path}")
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise UserError(f"{path}: shard files listed in the index are missing: {missing}")
    return files


# ---------------------------------------------------------------------------------------------------------------------
# Loading the model
# ---------------------------------------------------------------------------------------------------------------------


def load_qwen3(
    source: str | Path = DEFAULT_REPO,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Qwen3ForCausalLM:
    """Build our Qwen3 from a checkpoint directory or hub repo id, strictly, one tensor at a time."""
    path = resolve_checkpoint(source)
    config = Qwen3Config.from_json_file(path / "config.json")
    files = safetensors_files(path)

    with torch.device("meta"):  # shapes only, no memory
        model = Qwen3ForCausalLM(config)
    model = model.to(dtype).to_empty(device=device)  # one uninitialised copy, filled below
    if config.tie_word_embeddings:
        model.tie_weights()  # to_empty made two tensors of the shared one; share it again
    params = dict(model.named_parameters())  # tied: lm_head.weight is not listed separately
    loaded: set[str] = set()
    tied_head: tuple[Path, str] | None = None

    for file in files:
        try:
            handle = safe_open(str(file), framework="pt", device="cpu")
        except Exception as e:
            raise UserError(f"{file}: not a readable safetensors file ({e})") from None
        with handle as f:
            for key in f.keys():
                name = _our_name(key)
                if config.tie_word_embeddings and name == "lm_head.weight":
                    tied_head = (file, key)  # checked against the embedding once that is loaded
                    continue
                if name not in params:
                    raise UserError(f"{file.name}: unexpected tensor '{key}' (no such parameter in Qwen3)")
                try:
                    tensor = f.get_tensor(key)
                except Exception as e:
                    raise UserError(f"{file}: cannot read tensor '{key}' ({e}); is the file truncated?") from None
                param = params[name]
                if tuple(tensor.shape) != tuple(param.shape):
                    raise UserError(
                        f"shape mismatch for '{key}': checkpoint {tuple(tensor.shape)}, model {tuple(param.shape)}"
                    )
                if not torch.isfinite(tensor).all():
                    raise UserError(f"{file.name}: tensor '{key}' contains NaN or infinity")
                with torch.no_grad():
                    param.copy_(tensor)
                loaded.add(name)

    missing = sorted(set(params) - loaded)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"checkpoint {path} is missing tensors: {', '.join(missing[:5])}{more}")
    if tied_head is not None:
        _check_tied_head(*tied_head, model.model.embed_tokens.weight)
    return model.eval()


def _our_name(key: str) -> str:
    for old, new in WEIGHT_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def _check_tied_head(file: Path, key: str, embedding: torch.Tensor, rows: int = 8192) -> None:
    """A tied checkpoint may still store lm_head.weight; it must equal the embedding (compared in row chunks)."""
    with safe_open(str(file), framework="pt", device="cpu") as f:
        head = f.get_slice(key)
        if tuple(head.get_shape()) != tuple(embedding.shape):
            raise UserError(
                f"shape mismatch for '{key}': checkpoint {tuple(head.get_shape())}, model {tuple(embedding.shape)}"
            )
        for start in range(0, embedding.shape[0], rows):
            chunk = head[start : start + rows].to(device=embedding.device, dtype=embedding.dtype)
            if not torch.equal(chunk, embedding[start : start + rows]):
                raise UserError(
                    f"config says tie_word_embeddings=true but '{key}' differs from model.embed_tokens.weight "
                    f"(rows from {start}); set tie_word_embeddings=false in config.json if the head is separate"
                )


def save_qwen3(model: Qwen3ForCausalLM, directory: str | Path) -> Path:
    """Write `config.json` + `model.safetensors` in the hub's layout (what `load_qwen3` and transformers read).

    Used for small decoders made here (the offline demo's), so that every decoder loads the same way.
    A tied head is stored once, as the embedding.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))
    return directory


# ---------------------------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class TextTokenizer:
    """A `tokenizers.Tokenizer` with the ids the model needs: end-of-text and padding.

    `encode` adds no special tokens (Qwen3 Base adds none: no BOS). The token ids are the model's own vocabulary,
    which has fewer entries (151,669) than the embedding has rows (151,936); the extra rows are never produced.
    """

    tokenizer: Tokenizer
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


_REPORTED_EOS: set[tuple[str, int]] = set()  # (folder, id) whose other end-of-text was already reported


def load_tokenizer(source: str | Path = DEFAULT_REPO) -> TextTokenizer:
    """The tokenizer of a checkpoint directory or hub repo, with end-of-text and pad ids.

    End-of-text is `<|endoftext|>` (151643 in Qwen3's vocabulary) whenever the tokenizer has it: every target this
    project trains ends with it, and generation stops at it. It is what a Base checkpoint's `config.json` names. A
    post-trained release names `<|im_end|>` (151645) instead, the end of a turn of its chat template, which this
    project never writes and a Base model never learned; such a difference is reported in one line, and
    `<|endoftext|>` stays. Only a tokenizer without `<|endoftext|>` takes end-of-text from the files: `config.json`'s
    `eos_token_id`, else `generation_config.json`'s, else `tokenizer_config.json`'s `eos_token`.
    Padding comes from `tokenizer_config.json`'s `pad_token`, else `config.json`'s `pad_token_id`, else end-of-text.
    """
    path = resolve_checkpoint(source, need="tokenizer")
    file = path / "tokenizer.json"
    if not file.exists():
        raise UserError(f"no tokenizer.json in {path}")
    tokenizer = Tokenizer.from_file(str(file))

    def read(name: str) -> dict:
        p = path / name
        return json.loads(p.read_text()) if p.exists() else {}

    config, generation, tok_config = read("config.json"), read("generation_config.json"), read("tokenizer_config.json")

    def token_id(token: str | dict | None) -> int | None:
        if isinstance(token, dict):  # older files store {"content": "<|endoftext|>", ...}
            token = token.get("content")
        return tokenizer.token_to_id(token) if token else None

    def first(value: int | list[int] | None) -> int | None:
        return value[0] if isinstance(value, list) and value else (value if isinstance(value, int) else None)

    named = [  # what the files name as end-of-text, in order of precedence
        ("config.json's eos_token_id", first(config.get("eos_token_id"))),
        ("generation_config.json's eos_token_id", first(generation.get("eos_token_id"))),
        ("tokenizer_config.json's eos_token", token_id(tok_config.get("eos_token"))),
    ]
    where, declared = next(((w, i) for w, i in named if i is not None), (None, None))
    eos = token_id(END_OF_TEXT)
    if eos is None:
        eos = declared
    elif declared is not None and declared != eos and (str(path), declared) not in _REPORTED_EOS:
        _REPORTED_EOS.add((str(path), declared))  # once per folder: preflight and the run both read the tokenizer
        logger.warning(
            "%s: %s is %d (%s); this project's captions end with %s (%d), which training and generation use",
            path, where, declared, tokenizer.id_to_token(declared), END_OF_TEXT, eos,
        )  # fmt: skip
    if eos is None:
        raise UserError(f"{path}: cannot tell the end-of-text token (no {END_OF_TEXT}, no eos_token_id)")
    pad = token_id(tok_config.get("pad_token"))
    pad = pad if pad is not None else first(config.get("pad_token_id"))
    return TextTokenizer(tokenizer, eos_id=eos, pad_id=pad if pad is not None else eos)


# ---------------------------------------------------------------------------------------------------------------------
# Command line: a quick check that a checkpoint loads and talks
# ---------------------------------------------------------------------------------------------------------------------


def build_parser():
    from errors import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="weights_loader.py", description="Load a Qwen3 checkpoint into our decoder and continue a prompt."
    )
    parser.add_argument("source", nargs="?", default=DEFAULT_REPO, help="hub repo id or local directory")
    parser.add_argument("--prompt", default="The capital of France is", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="how many tokens to generate (greedy)")
    return parser


def continue_prompt(source: str, prompt: str, max_new_tokens: int) -> str:
    """The prompt and its greedy continuation by the checkpoint `source`; `UserError` for what the user can fix."""
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {max_new_tokens} is invalid; expected an integer >= 1")
    if not prompt:
        raise UserError("--prompt is empty; give the text to continue")
    path = resolve_checkpoint(source, instead="weights_loader.py DIR")  # this command's way to a local copy
    tokenizer = load_tokenizer(path)
    model = load_qwen3(path)
    ids = torch.tensor([tokenizer.encode(prompt)])
    room = model.config.max_position_embeddings - ids.shape[1]  # positions the model was built for
    if max_new_tokens > room:
        raise UserError(
            f"--max-new-tokens {max_new_tokens} is invalid for this prompt of {ids.shape[1]} tokens: the model takes "
            f"{model.config.max_position_embeddings} positions (accepted: 1..{room})"
        )
    new = model.generate(ids, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_id)
    return prompt + tokenizer.decode(new[0].tolist())


def main(argv: list[str] | None = None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    try:
        print(continue_prompt(args.source, args.prompt, args.max_new_tokens))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
