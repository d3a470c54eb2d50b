"""The larger Qwen3s: Qwen3-1.7B-Base, 4B-Base and 8B-Base load, match transformers and train, as 0.6B-Base does.

- The table of released layouts (`Qwen3Config.released`, `tiny_decoder/config.py`) against the releases' own
  `config.json` files, written out here key by key, and against the parameter counts their model cards state.
- Logits parity at each size's full width: transformers builds a random model with the size's width, MLP width,
  heads and head_dim, tied or untied as the release is, but with 1-2 blocks instead of 28-36 and 1,024 embedding rows
  instead of 151,936 (neither changes how a tensor maps; together they keep each case to about 5 s and under 3 GB).
  Our loader reads its `save_pretrained` folder and the fp32 logits must agree within 1e-4 of their scale.
- End of text: a post-trained release's `config.json` names `<|im_end|>` (151645); the captions this project trains
  still end with `<|endoftext|>` (151643), and the difference is reported in one line.
- One optimizer step of `train.py` with a hub-shaped Qwen3-1.7B-Base folder: full width 2048, 2 blocks, the real
  tokenizer and all 151,936 rows; the bridge maps to width 2048 and the checkpoint loads back.

Read next: `tests/test_decoder.py` (parity of the components, generation and the KV cache at small sizes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import hf_qwen3_config
from test_data_imagefolder import tiny_jpeg, write_jsonl
from test_decoder import assert_close_logits, transformers_qwen3

from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from tiny_decoder.config import RELEASED
from weights_loader import load_qwen3, load_tokenizer

# ----------------------------------------------------------------------------------------------------- the layouts

# The keys every released dense Qwen3 config.json has with the same value.
HUB_COMMON = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 151643,
    "head_dim": 128, "hidden_act": "silu", "initializer_range": 0.02, "model_type": "qwen3", "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "sliding_window": None, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip
# The keys that differ, as each release's config.json has them (the sources are named in tiny_decoder/config.py).
HUB_FILES = {
    "Qwen/Qwen3-0.6B-Base": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "max_window_layers": 28, "num_attention_heads": 16, "max_position_embeddings": 32768, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151643},
    "Qwen/Qwen3-1.7B-Base": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "max_window_layers": 28, "num_attention_heads": 16, "max_position_embeddings": 32768, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151643},
    "Qwen/Qwen3-4B-Base": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
        "max_window_layers": 36, "num_attention_heads": 32, "max_position_embeddings": 32768, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151643},
    "Qwen/Qwen3-8B-Base": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
        "max_window_layers": 36, "num_attention_heads": 32, "max_position_embeddings": 32768, "rope_theta": 1000000,
        "tie_word_embeddings": False, "eos_token_id": 151643},
    "Qwen/Qwen3-0.6B": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "max_window_layers": 28, "num_attention_heads": 16, "max_position_embeddings": 40960, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151645},
    "Qwen/Qwen3-1.7B": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28,
        "max_window_layers": 28, "num_attention_heads": 16, "max_position_embeddings": 40960, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151645},
    "Qwen/Qwen3-4B": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
        "max_window_layers": 36, "num_attention_heads": 32, "max_position_embeddings": 40960, "rope_theta": 1000000,
        "tie_word_embeddings": True, "eos_token_id": 151645},
    "Qwen/Qwen3-8B": {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
        "max_window_layers": 36, "num_attention_heads": 32, "max_position_embeddings": 40960, "rope_theta": 1000000,
        "tie_word_embeddings": False, "eos_token_id": 151645},
    "Qwen/Qwen3-4B-Instruct-2507": {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
        "max_window_layers": 36, "num_attention_heads": 32, "max_position_embeddings": 262144, "rope_theta": 5000000,
        "tie_word_embeddings": True, "eos_token_id": 151645},
}  # fmt: skip


def hub_config_json(name: str, **changes) -> dict:
    """Release `name`'s config.json as the hub holds it, with `changes` (a reduced depth, say)."""
    return HUB_COMMON | HUB_FILES[name] | changes


def test_every_release_in_the_table_has_its_config_json_here():
    assert set(HUB_FILES) == set(RELEASED)


@pytest.mark.parametrize(
    "name, layers, width, tied, rope_theta, eos",
    [
        ("Qwen/Qwen3-0.6B-Base", 28, 1024, True, 1e6, 151643),
        ("Qwen/Qwen3-1.7B-Base", 28, 2048, True, 1e6, 151643),
        ("Qwen/Qwen3-4B-Base", 36, 2560, True, 1e6, 151643),
        ("Qwen/Qwen3-8B-Base", 36, 4096, False, 1e6, 151643),  # the first size with an LM head of its own
        ("Qwen/Qwen3-0.6B", 28, 1024, True, 1e6, 151645),  # post-trained: <|im_end|>, 40,960 positions
        ("Qwen/Qwen3-1.7B", 28, 2048, True, 1e6, 151645),
        ("Qwen/Qwen3-4B", 36, 2560, True, 1e6, 151645),
        ("Qwen/Qwen3-8B", 36, 4096, False, 1e6, 151645),
        ("Qwen/Qwen3-4B-Instruct-2507", 36, 2560, True, 5e6, 151645),  # the 2507 update: RoPE base 5e6, 262,144
    ],
)
def test_a_hub_config_json_reads_as_the_released_layout(tmp_path, name, layers, width, tied, rope_theta, eos):
    (tmp_path / "config.json").write_text(json.dumps(hub_config_json(name), indent=2))
    config = Qwen3Config.from_json_file(tmp_path / "config.json")
    assert config == Qwen3Config.released(name)
    shape = (config.num_hidden_layers, config.hidden_size, config.tie_word_embeddings, config.rope_theta)
    assert shape == (layers, width, tied, rope_theta) and config.eos_token_id == eos
    assert (config.head_dim, config.num_key_value_heads, config.vocab_size) == (128, 8, 151_936)


@pytest.mark.parametrize(
    "name, total, non_embedding",
    [
        ("Qwen/Qwen3-0.6B-Base", "0.6B", "0.44B"),
        ("Qwen/Qwen3-1.7B-Base", "1.7B", "1.4B"),
        ("Qwen/Qwen3-4B-Base", "4.0B", "3.6B"),
        ("Qwen/Qwen3-8B-Base", "8.2B", "6.95B"),  # tied, 8B would hold 7.6B: its head is its own
    ],
)
def test_each_layout_has_the_parameters_its_model_card_states(name, total, non_embedding):
    """The model cards' "Number of Parameters" and "(Non-Embedding)", to the digits they give; the model is built on
    the meta device (shapes only, no memory)."""
    config = Qwen3Config.released(name)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    embedding = model.model.embed_tokens.weight.numel()
    embedding_and_head = embedding * (1 if config.tie_word_embeddings else 2)

    def billions(n: int, like: str) -> str:
        return f"{n / 1e9:.{len(like.split('.')[1]) - 1}f}B"

    assert billions(params, total) == total
    assert billions(params - embedding_and_head, non_embedding) == non_embedding


def test_an_unknown_release_is_a_user_error_naming_the_known_ones():
    from errors import UserError

    with pytest.raises(UserError, match=r"'Qwen/Qwen3-3B-Base' is not a Qwen3 release .*Qwen/Qwen3-1\.7B-Base"):
        Qwen3Config.released("Qwen/Qwen3-3B-Base")


# ----------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize(
    "name, blocks",
    [("Qwen/Qwen3-1.7B-Base", 2), ("Qwen/Qwen3-4B-Base", 2), ("Qwen/Qwen3-8B-Base", 1)],
    ids=["1.7B", "4B", "8B-untied"],
)
def test_full_width_reduced_depth_matches_transformers(tmp_path, name, blocks):
    """The release's width, MLP width, heads, head_dim, RoPE base and tying; `blocks` of its 28-36 blocks and 1,024 of
    its 151,936 embedding rows (neither changes how a tensor maps; together they keep this to about 5 s and < 3 GB)."""
    release = Qwen3Config.released(name)
    layout = dataclasses.replace(release, num_hidden_layers=blocks, vocab_size=1024)
    hf_config = hf_qwen3_config(
        **{k: getattr(layout, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")},
        **{k: getattr(layout, k) for k in ("num_attention_heads", "num_key_value_heads", "head_dim", "rope_theta")},
        max_position_embeddings=layout.max_position_embeddings,
        tie_word_embeddings=layout.tie_word_embeddings,
    )
    # Random values drawn at once (transformers' own initialisation of these widths takes seconds): uniform with the
    # std of its normal(0, 0.02), and norm gains in [0.5, 1.5] so that a misplaced norm shows.
    from transformers.initialization import no_init_weights

    with no_init_weights():
        hf = transformers_qwen3().Qwen3ForCausalLM(hf_config).eval()
    if layout.tie_word_embeddings:
        hf.tie_weights()  # skipped with the initialisation
    with torch.no_grad():
        for param_name, p in hf.named_parameters():
            p.uniform_(0.5, 1.5) if "norm" in param_name else p.uniform_(-0.02 * 3**0.5, 0.02 * 3**0.5)
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) == layout.tie_word_embeddings
    # Saved in bfloat16, as the releases are; the fp32 reference holds the same (rounded) values.
    for p in hf.parameters():
        p.data = p.data.to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    for p in hf.parameters():
        p.data = p.data.float()

    ours = load_qwen3(tmp_path)
    assert ours.config == dataclasses.replace(layout, bos_token_id=None, eos_token_id=None)  # the save names no ids
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    ids = torch.randint(0, 1024, (2, 9))
    with torch.no_grad():
        assert_close_logits(ours(ids), hf(ids).logits)


# ----------------------------------------------------------------------------------------------------- end of text


def hub_folder(folder: Path, name: str, tokenizer_dir: Path, generation: dict) -> Path:
    """A release's files without its weights: config.json, generation_config.json and the real tokenizer's files
    (tokenizer_config.json is the shared post-trained one, whose eos_token is <|im_end|>)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hub_config_json(name), indent=2))
    (folder / "generation_config.json").write_text(json.dumps(generation))
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / file, folder / file)
    return folder


def test_a_post_trained_release_still_ends_captions_with_endoftext(qwen3_tokenizer_dir, tmp_path, caplog):
    """Qwen/Qwen3-1.7B's config.json says eos 151645 (<|im_end|>, its chat template's end of turn); its
    generation_config.json stops at [151645, 151643]. The captions here end with <|endoftext|>: so do the targets
    trained and generation's stop, and the difference is said in one line."""
    post_trained = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}
    folder = hub_folder(tmp_path / "qwen3-1.7b", "Qwen/Qwen3-1.7B", qwen3_tokenizer_dir, post_trained)
    with caplog.at_level(logging.WARNING, logger="weights_loader"):
        tokenizer = load_tokenizer(folder)
    assert (tokenizer.eos_id, tokenizer.pad_id) == (151643, 151643)
    assert tokenizer.tokenizer.id_to_token(tokenizer.eos_id) == "<|endoftext|>"
    [line] = [r.getMessage() for r in caplog.records]
    assert "config.json's eos_token_id is 151645 (<|im_end|>)" in line and "<|endoftext|> (151643)" in line
    assert "\n" not in line
    with caplog.at_level(logging.WARNING, logger="weights_loader"):
        load_tokenizer(folder)  # read again (train.py's checks, then the run): said once
    assert len(caplog.records) == 1


def test_a_base_release_ends_with_endoftext_and_says_nothing(qwen3_tokenizer_dir, tmp_path, caplog):
    base = {"bos_token_id": 151643, "eos_token_id": 151643, "max_new_tokens": 2048}
    folder = hub_folder(tmp_path / "qwen3-1.7b-base", "Qwen/Qwen3-1.7B-Base", qwen3_tokenizer_dir, base)
    with caplog.at_level(logging.WARNING, logger="weights_loader"):
        tokenizer = load_tokenizer(folder)
    assert (tokenizer.eos_id, tokenizer.pad_id) == (151643, 151643) and not caplog.records


def test_a_tokenizer_without_endoftext_takes_the_end_of_text_its_files_name(tmp_path, caplog):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<unk>": 0, "<eos>": 1, "<pad>": 2, "a": 3, "cat": 4}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 1}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<unk>", "pad_token": "<pad>"}))
    with caplog.at_level(logging.WARNING, logger="weights_loader"):
        loaded = load_tokenizer(tmp_path)
    assert (loaded.eos_id, loaded.pad_id) == (1, 2) and not caplog.records  # config.json comes first


# ----------------------------------------------------------------------------------------------------- one training step


@pytest.mark.slow  # it trains: about 25 s and 4 GB on a 2-core machine, most of it the 151,936 x 2048 embedding
def test_one_training_step_with_a_hub_shaped_qwen3_1_7b_base(qwen3_tokenizer_dir, tmp_path):
    """A Qwen3-1.7B-Base folder as the hub holds it (config.json, generation_config.json, model.safetensors, the
    tokenizer files), with random bf16 weights under the release's tensor names (`rehearse/qwen3.py` lists them from
    the config, not from our decoder), at the full width 2048 and all 151,936 rows, but 2 of its 28 blocks. train.py
    takes it with `--decoder DIR` for one optimizer step on ten images."""
    from safetensors.torch import save_file

    import train
    from checkpoints.restore import load_trained
    from checkpoints.store import list_checkpoints
    from rehearse.qwen3 import random_weights, write_tokenizer

    decoder = tmp_path / "Qwen3-1.7B-Base"
    decoder.mkdir()
    config = hub_config_json("Qwen/Qwen3-1.7B-Base", num_hidden_layers=2, max_window_layers=2)
    (decoder / "config.json").write_text(json.dumps(config, indent=2))
    (decoder / "generation_config.json").write_text(json.dumps({"bos_token_id": 151643, "eos_token_id": 151643}))
    write_tokenizer(decoder, qwen3_tokenizer_dir)
    weights = random_weights(config, seed=0)
    del weights["lm_head.weight"]  # tied: stored once, as the embedding
    save_file(weights, decoder / "model.safetensors", metadata={"format": "pt"})
    del weights

    images = tmp_path / "images"
    for i in range(10):
        tiny_jpeg(images / f"photo{i}.jpg")
    captions = ["a red square on a white table", "a small red tile", "something red and square", "a red block"]
    write_jsonl(images / "metadata.jsonl", [{"file_name": f"photo{i}.jpg", "text": captions[i % 4]} for i in range(10)])

    output = tmp_path / "models"
    args = ["--demo", "--data", str(images), "--decoder", str(decoder), "--top-k", "1", "--max-steps", "1",
            "--batch-size", "2", "--output-dir", str(output), "--cache-dir", str(tmp_path / "cache"),
            "--wandb", "disabled", "--run-name", "qwen3-1.7b"]  # fmt: skip
    assert train.main(args) == 0

    [checkpoint] = list_checkpoints(output / "runs" / "qwen3-1.7b")
    model, tokenizer, sidecar = load_trained(checkpoint)
    assert sidecar["decoder"]["config"]["hidden_size"] == 2048 and sidecar["tokenizer"]["eos_id"] == 151643
    assert model.decoder.config == Qwen3Config.from_dict(config)
    features = torch.randn(1, model.encoder.num_tokens, model.encoder.hidden_dim)  # the encoder's hidden view
    with torch.no_grad():
        assert model.visual_tokens(features=features).shape == (1, model.config.num_visual_tokens, 2048)
    trained = model.trainable_state_dict()
    assert any(k.startswith("decoder.model.layers.1.") for k in trained)  # the top block of 2
    assert not any(k.startswith("decoder.model.layers.0.") for k in trained)
