"""Frozen weights stored in bf16 under bf16 autocast: what is cast, what stays fp32, and that the numbers hold.

`VisionLanguageModel.store_frozen_in(bf16)` (bridge/vlm.py) stores the frozen decoder weights in bf16 when the run
computes under bf16 autocast (`runtime.devices.frozen_dtype`); what trains stays fp32. The CPU runs bf16 autocast as
well, so all of it is checked here with `--precision bf16`: the dtypes, the loss and gradients against the same model
stored in fp32, every inference path (generation, beam search, retrieval's shared prefix, occlusion), and a short demo
run that resumes exactly and is tested. In fp32 (the CPU's default) nothing is cast at all.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_bridge import batch, tiny_decoder
from test_train import demo_args, train_losses

import train
from bridge import VisionLanguageModel, VLMConfig
from checkpoints.store import read_checkpoint
from errors import UserError
from explain.occlusion import token_log_probs
from runtime.devices import frozen_dtype
from vision import build_encoder

BF16 = torch.bfloat16
# The two stores differ only by roundings to bf16 that autocast does not make itself: the token embeddings, the frozen
# norm gains, and the residual stream, which takes the embeddings' dtype. Each rounding is relative 2^-9 at most, and
# they reach the loss diluted (the loss's softmax is fp32 in both). So the losses must agree to 2^-8 relative (two
# roundings' worth): over 32 models (8 seeds, LoRA or not, pooled or hidden view) the largest difference measured
# was 7.4e-4. The trained parameters' gradients differ by 1.4% of their norm at most there (cosine >= 0.9999); 5%
# is allowed.
LOSS_RTOL, GRAD_RTOL = 2**-8, 0.05


def tiny_vlm(lora_rank: int = 2, view: str = "pooled", seed: int = 0) -> VisionLanguageModel:
    """test_bridge's 4-block decoder, the top block trains, LoRA adapters (B non-zero) on the three below."""
    config = VLMConfig(encoder="tiny", encoder_weights="none", view=view, num_visual_tokens=4, top_k=1,
                       lora_rank=lora_rank)  # fmt: skip
    torch.manual_seed(seed)
    model = VisionLanguageModel(config, build_encoder("tiny", "none"), tiny_decoder(seed=seed))
    with torch.no_grad():
        for adapter in model.lora.values():  # as after some training: the adapters change the output
            adapter.lora_B.weight.normal_(std=0.05)
    return model


def trainable(model: VisionLanguageModel) -> list[torch.nn.Parameter]:
    return [p for group in model.parameter_groups().values() for p in group]


def test_frozen_dtype_is_bf16_exactly_when_the_run_computes_in_bf16():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert frozen_dtype(cpu, "auto") == frozen_dtype(cpu, "fp32") == frozen_dtype(cuda, "fp32") == torch.float32
    assert frozen_dtype(cpu, "bf16") == frozen_dtype(cuda, "auto") == frozen_dtype(cuda, "bf16") == BF16
    with pytest.raises(UserError, match="precision='fp16' is invalid; accepted: auto, fp32, bf16"):
        frozen_dtype(cpu, "fp16")


def test_only_the_frozen_decoder_parameters_are_cast():
    model = tiny_vlm()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    assert model.store_frozen_in(torch.float32) == 0  # fp32: nothing is cast, every tensor as it was
    assert all(torch.equal(t, before[name]) and t.dtype == before[name].dtype for name, t in model.state_dict().items())

    trains = {id(p) for p in trainable(model)}
    frozen = [p for p in model.decoder.parameters() if id(p) not in trains]
    assert model.store_frozen_in(BF16) == len(frozen) > 0
    assert {p.dtype for p in frozen} == {BF16}
    assert {p.dtype for p in trainable(model)} == {torch.float32}  # bridge, top block, LoRA A and B
    assert all(p.requires_grad for p in trainable(model)) and not any(p.requires_grad for p in frozen)
    decoder = model.decoder
    assert decoder.lm_head.weight is decoder.model.embed_tokens.weight  # still one tied Parameter
    assert decoder.dtype == BF16 and decoder.new_kv_cache(1, 4).k[0].dtype == BF16  # residual stream, KV cache
    assert decoder.model.norm.weight.dtype == BF16  # a frozen norm; the top block's norms train, in fp32
    assert decoder.model.layers[-1].input_layernorm.weight.dtype == torch.float32
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}  # the encoder is left as built
    for name, t in model.state_dict().items():  # bf16 holds what it could of the fp32 values
        torch.testing.assert_close(t.float(), before[name], rtol=2**-8, atol=0)
    assert model.store_frozen_in(BF16) == 0  # once is all


@pytest.mark.parametrize("lora_rank, view", [(0, "pooled"), (2, "hidden")])
def test_loss_and_gradients_under_bf16_autocast_match_the_fp32_store(lora_rank, view):
    stored_fp32 = tiny_vlm(lora_rank, view)
    stored_bf16 = copy.deepcopy(stored_fp32)
    stored_bf16.store_frozen_in(BF16)
    input_ids, labels, pixels = batch()
    losses, grads = [], []
    for model in (stored_fp32, stored_bf16):
        with torch.autocast("cpu", dtype=BF16):
            loss = model(input_ids, labels, pixels)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        for name, group in model.parameter_groups().items():  # the gradient reaches every group that trains, in fp32
            assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in group), name
            assert not group or any(p.grad.abs().sum() > 0 for p in group), name
        assert all(p.grad is None for p in model.decoder.parameters() if not p.requires_grad)
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in trainable(model)]))
    assert losses[1] == pytest.approx(losses[0], rel=LOSS_RTOL)
    assert (grads[1] - grads[0]).norm() <= GRAD_RTOL * grads[0].norm()


def test_generation_beam_search_retrieval_and_occlusion_run_on_the_bf16_store():
    stored_fp32 = tiny_vlm().eval()
    stored_bf16 = copy.deepcopy(stored_fp32)
    stored_bf16.store_frozen_in(BF16)
    input_ids, labels, pixels = batch()
    input_ids[:, :2], labels[:, :2] = torch.tensor([5, 7]), -100  # one prompt, for the shared prefix
    features = stored_bf16.encoder(pixels, view="pooled")  # [3, ...]: the encoder runs as before (fp32)
    prompts = [[5, 7], [9]]
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        # Greedy and beam search decode from a bf16 KV cache; their ids are ids, whatever the store.
        generated = stored_bf16.generate(prompts, features=features[:2], max_new_tokens=4)
        beams, scores = stored_bf16.beam_search(prompts, features=features[:2], num_beams=2, max_new_tokens=4)
        assert all(len(ids) <= 4 for ids in generated + beams) and torch.isfinite(scores).all()
        # Retrieval: the shared-prefix path (bf16 cache, read in place) against each image's rows run whole.
        shared = stored_bf16.shared_prefix_log_likelihood(input_ids, labels, 2, features=features[:2])  # [2, 3]
        whole = torch.stack([stored_bf16.sequence_log_likelihood(input_ids, labels, features=f.expand(3, -1))
                             for f in features[:2]])  # fmt: skip
        reference = torch.stack([stored_fp32.sequence_log_likelihood(input_ids, labels, features=f.expand(3, -1))
                                 for f in features[:2]])  # fmt: skip
        # Occlusion's teacher-forced log-probabilities read lm_head.weight directly (explain/occlusion.py).
        occluded = [token_log_probs(m, features, [[5, 7]] * 3, [[9, 11, 13]] * 3) for m in (stored_fp32, stored_bf16)]
    assert shared.dtype == torch.float32 and whole.dtype == torch.float32
    # atol 0.05, as tests/test_perf_paths.py allows the shared prefix under bf16 autocast with fp32 weights; between
    # the two stores, also one bf16 step (2^-7 relative) of these logits (about 16 here: a step is 0.0625).
    torch.testing.assert_close(shared, whole, rtol=0, atol=0.05)
    torch.testing.assert_close(whole, reference, rtol=2**-7, atol=0.05)
    torch.testing.assert_close(occluded[1], occluded[0], rtol=2**-7, atol=0.05)


def test_a_bf16_demo_run_stores_frozen_weights_in_bf16_resumes_exactly_and_tests(tmp_path, session_cache, monkeypatch):
    """`--precision bf16` on the CPU: the run's frozen weights are bf16 and what trains is fp32 (a spy on
    `store_frozen_in` looks); the checkpoint holds only fp32 trained tensors; a run stopped at step 2 and resumed
    gives steps 3-4 the losses of a straight run; --test restores it in bf16 too; caption.py on the CPU keeps fp32."""
    from captioning import Captioner

    seen = []
    original = VisionLanguageModel.store_frozen_in

    def spy(self, dtype):
        changed = original(self, dtype)
        seen.append((dtype, {p.dtype for p in trainable(self)}, self.decoder.dtype, changed))
        return changed

    monkeypatch.setattr(VisionLanguageModel, "store_frozen_in", spy)
    run = ("--precision", "bf16", "--lora-rank", "2", "--top-k", "1", "--lr-lora", "1e-3")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert train.main(demo_args(straight, session_cache, *run, "--max-steps", "4", "--run-name", "a")) == 0
    assert seen[0][:3] == (BF16, {torch.float32}, BF16) and seen[0][3] > 0
    assert train.main(demo_args(resumed, session_cache, *run, "--max-steps", "2", "--run-name", "b")) == 0
    assert train.main(demo_args(resumed, session_cache, *run, "--max-steps", "4", "--resume")) == 0
    a, b = train_losses(straight / "models" / "runs" / "a"), train_losses(resumed / "models" / "runs" / "b")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in range(1, 5):
        assert b[step] == pytest.approx(a[step], rel=1e-6, abs=1e-7), step

    checkpoint = resumed / "models" / "runs" / "b" / "1_tiny_top1_step4.safetensors"
    weights, _ = read_checkpoint(checkpoint)
    assert {t.dtype for t in weights.values()} == {torch.float32}  # only what trains, as before
    assert any(".lora_B." in k for k in weights) and not any(".base_layer." in k or "embed" in k for k in weights)

    seen.clear()
    test = ["--test", "--checkpoint", str(checkpoint), "--precision", "bf16", "--eval-images", "4", "--no-meteor"]
    assert train.main([*test, "--cache-dir", str(session_cache), "--wandb", "disabled"]) == 0
    assert seen[0][0] == BF16 and seen[0][3] > 0

    seen.clear()
    captioner = Captioner(checkpoint, "cpu")  # no autocast on a CPU: the model stays fp32, as before
    assert seen[0][0] == torch.float32 and seen[0][3] == 0
    assert {p.dtype for p in captioner.model.parameters()} == {torch.float32}
