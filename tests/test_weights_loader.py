"""The loader is strict, the config is validated, the tokenizer knows its special ids, and the hub fails clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file, save_file

from errors import UserError
from tiny_decoder import Qwen3Config, Qwen3ForCausalLM
from weights_loader import load_qwen3, load_tokenizer

# ----------------------------------------------------------------------------------------------------- strictness


def _rewrite(path, edit):
    """Load model.safetensors, let `edit` change the dict, save it back."""
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def test_missing_key_is_named(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    _rewrite(path, lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"))
    with pytest.raises(UserError, match=r"missing tensors: model\.layers\.1\.self_attn\.k_norm\.weight"):
        load_qwen3(path)


def test_unknown_key_is_named(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    _rewrite(path, lambda t: t.__setitem__("model.layers.0.self_attn.q_bias", torch.zeros(3)))
    with pytest.raises(UserError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.q_bias'"):
        load_qwen3(path)


def test_shape_mismatch_names_key_and_both_shapes(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    _rewrite(path, lambda t: t.__setitem__("model.norm.weight", torch.ones(47)))
    with pytest.raises(UserError, match=r"'model\.norm\.weight': checkpoint \(47,\), model \(48,\)"):
        load_qwen3(path)


def test_non_finite_tensor_is_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint()

    def poison(t):
        t["model.layers.2.mlp.up_proj.weight"][0, 0] = float("nan")

    _rewrite(path, poison)
    with pytest.raises(UserError, match=r"model\.layers\.2\.mlp\.up_proj\.weight' contains NaN"):
        load_qwen3(path)


def test_truncated_safetensors_file(tiny_checkpoint):
    path, _ = tiny_checkpoint()
    file = path / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"model\.safetensors"):
        load_qwen3(path)


def test_tied_head_is_checked_and_dropped(tiny_checkpoint):
    path, hf = tiny_checkpoint(tie_word_embeddings=True)
    # A tied checkpoint that stores lm_head.weight as an exact copy loads; the head IS the embedding afterwards.
    _rewrite(path, lambda t: t.__setitem__("lm_head.weight", t["model.embed_tokens.weight"].clone()))
    model = load_qwen3(path)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    # A different head under tie_word_embeddings=true is a contradiction.
    _rewrite(path, lambda t: t.__setitem__("lm_head.weight", t["lm_head.weight"] + 1))
    with pytest.raises(UserError, match="tie_word_embeddings=true but 'lm_head.weight' differs"):
        load_qwen3(path)


def test_untied_checkpoint_keeps_a_separate_head(tiny_checkpoint):
    path, hf = tiny_checkpoint(tie_word_embeddings=False)
    model = load_qwen3(path)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    torch.testing.assert_close(model.lm_head.weight, hf.lm_head.weight)


def test_loads_in_bfloat16(tiny_checkpoint):
    path, hf = tiny_checkpoint()
    model = load_qwen3(path, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(model.model.norm.weight, hf.model.norm.weight.bfloat16())


# ----------------------------------------------------------------------------------------------------- config


def test_config_reads_both_rope_spellings():
    hub = {"rope_theta": 1000000, "rope_scaling": None, "torch_dtype": "bfloat16", "use_sliding_window": False}
    v5 = {"rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "dtype": "float32"}
    assert Qwen3Config.from_dict(hub).rope_theta == Qwen3Config.from_dict(v5).rope_theta == 1e6


def test_real_qwen3_0_6b_base_config_json_reads_as_the_preset():
    # The hub's Qwen/Qwen3-0.6B-Base config.json, written out key by key.
    hub = {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128, "hidden_act": "silu",
        "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
        "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen3",
        "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 151936,
    }  # fmt: skip
    config = Qwen3Config.from_dict(hub)
    assert config == Qwen3Config(bos_token_id=151643)
    assert config.num_key_value_groups == 2 and config.head_dim * config.num_attention_heads == 2048


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2}}, "rope_type='linear'"),
        ({"attention_bias": True}, "attention_bias=true"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"num_attention_heads": 6, "num_key_value_heads": 4}, "not a multiple"),
        ({"hidden_size": 0}, "hidden_size=0"),
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"made_up_option": 1}, "unknown config keys \\['made_up_option'\\]"),
        ({"initializer_range": 0}, "initializer_range=0 must be a positive number"),
    ],
)
def test_unsupported_options_are_refused_by_name(raw, message):
    with pytest.raises(UserError, match=message):
        Qwen3Config.from_dict(raw)


def test_random_initialisation_follows_initializer_range():
    # A random decoder (the demo's) starts at the config's std; a loaded one overwrites it, so real files keep 0.02.
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, head_dim=16, vocab_size=100)
    for std in (0.02, 0.125):
        torch.manual_seed(0)
        model = Qwen3ForCausalLM(Qwen3Config(initializer_range=std, **small))
        assert model.model.layers[0].mlp.up_proj.weight.std().item() == pytest.approx(std, rel=0.05)


def test_config_is_frozen():
    config = Qwen3Config()
    with pytest.raises(AttributeError):
        config.num_hidden_layers = 3  # type: ignore[misc]


def test_malformed_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Qwen3Config.from_json_file(tmp_path / "config.json")


# ----------------------------------------------------------------------------------------------------- hub


def test_unreachable_hub_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(UserError) as info:
        load_qwen3("Qwen/Qwen3-0.6B-Base")
    message = str(info.value)
    assert "Qwen/Qwen3-0.6B-Base" in message and "config.json" in message and "--local-dir" in message
    assert "\n" not in message


def test_not_a_directory_nor_a_repo_id(tmp_path):
    with pytest.raises(UserError, match="neither a directory nor a hub repo id"):
        load_qwen3(tmp_path / "nowhere" / "at" / "all")


def test_command_line_reports_the_hub_error_without_traceback(tmp_path, monkeypatch, capsys):
    """`python weights_loader.py REPO` offline: its main() in this process (the test below runs the real command)."""
    from weights_loader import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    assert main(["Qwen/Qwen3-0.6B-Base"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: could not fetch") and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""


def test_command_line_continues_a_prompt_from_a_local_directory(tiny_checkpoint, qwen3_tokenizer_dir, tmp_path):
    path, _ = tiny_checkpoint(vocab_size=151_669, hidden_size=16, intermediate_size=32, num_hidden_layers=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen3_tokenizer_dir / name, path / name)
    result = subprocess.run(
        [sys.executable, str(REPO / "weights_loader.py"), str(path), "--prompt", "A dog", "--max-new-tokens", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("A dog")


# ----------------------------------------------------------------------------------------------------- tokenizer


def test_real_tokenizer_special_ids_and_round_trip(qwen3_tokenizer_dir, tmp_path):
    tok = load_tokenizer(qwen3_tokenizer_dir)
    assert tok.vocab_size == 151_669 < Qwen3Config().vocab_size == 151_936
    assert tok.tokenizer.token_to_id("<|endoftext|>") == 151_643
    assert tok.tokenizer.token_to_id("<|im_start|>") == 151_644
    assert tok.tokenizer.token_to_id("<|im_end|>") == 151_645
    assert tok.pad_id == 151_643
    for caption in [
        "A man in an orange hat starring at something.",
        "Two young, White males are outside near many bushes.",
        "  a dog runs   through the grass!  ",
        "Café au lait — naïve résumé 😀",
    ]:
        ids = tok.encode(caption)
        assert tok.decode(ids) == caption
    assert tok.encode("hello") and tok.encode("hello")[0] != 151_643  # no BOS/special token added

    # A Base checkpoint directory: config.json says end-of-text is <|endoftext|> (the instruct tokenizer_config's
    # eos is <|im_end|>, which the Base model never produces).
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(qwen3_tokenizer_dir / name, tmp_path / name)
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 151643, "bos_token_id": 151643}))
    base = load_tokenizer(tmp_path)
    assert (base.eos_id, base.pad_id) == (151_643, 151_643)
