"""The vision-language model: frozen encoder -> bridge -> visual tokens -> Qwen3, with top-K freezing.

The decoder reads one sequence of embeddings:

    [ v_1 ... v_N ][ prompt tokens ][ target tokens, <|endoftext|> ][ padding ]
      visual tokens  "Caption:"        " a red circle ..."
      (the bridge)   (no loss)          (the loss is here only)

Position t predicts token t + 1, so the loss reads the logits one position before each target token. Labels are
-100 (ignored) on visual, prompt and padding positions; logits are computed *only* where there is a label,
because the 151,936-wide vocabulary head is the largest activation in the model.

What trains (transfer learning): the bridge, and the top K decoder blocks. Everything else is frozen: the vision
encoder, the token embeddings (and so the tied LM head), the lower num_hidden_layers - K blocks and the final norm.
K = 0 keeps the language model entirely frozen: only the bridge learns to "prompt" it. `summary()` prints one
table of what trains, so nothing trains by accident.

References:
- Alayrac et al. 2022, Flamingo (frozen LM + vision), https://arxiv.org/abs/2204.14198
- Liu et al. 2023, LLaVA (projector + decoder, two-stage training), https://arxiv.org/abs/2304.08485
- Mokady et al. 2021, ClipCap (a CLIP prefix for a language model), https://arxiv.org/abs/2111.09734

Read next: `data/batches.py` (where a batch's prompt, target and -100 labels come from).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from errors import UserError
from runtime.settings import setting
from tiny_decoder import Qwen3ForCausalLM
from tiny_decoder.beam import beam_search
from tiny_decoder.lora import TARGETS, LoRALinear, add_lora, check_rank, merge_lora, parse_targets
from tiny_decoder.model import linear_cross_entropy, target_log_probs
from tiny_decoder.shared_prefix import continuation_hidden_states
from vision import ENCODER_NAMES, VIEWS, build_encoder

from .adapters import build_bridge


@dataclass(frozen=True)
class VLMConfig:
    """How the vision-language model is assembled (the decoder has its own `Qwen3Config`).

    Each field is also a flag of train.py (`top_k` <-> `--top-k`, its help beside it; runtime/settings.py), and
    part of the training configuration (`TrainConfig.model`). Checkpoints record these values: a checkpoint only
    fits a model with the same ones (`checkpoints.store.MODEL_KEYS`).
    """

    encoder: str = setting(
        "vit",
        "frozen vision encoder: vit (timm ViT-B/16, 768-d CLS), clip (open_clip ViT-B/32, 512-d) or tiny (tests, demo)",
        env="VISION_ENCODER",
        run=True,
    )
    encoder_weights: str = setting(
        "default",
        "encoder weights: 'default' (timm's / openai), another pretrained tag, a local file, or 'none'",
        run=True,
    )
    view: str = setting(
        "pooled", "encoder output the bridge reads: pooled (one embedding) or hidden (all last-layer tokens)", run=True
    )
    num_visual_tokens: int = setting(16, "visual tokens the bridge prepends to the text", run=True)
    top_k: int = setting(
        3, "how many of the decoder's top blocks train; 0 keeps the language model frozen", env="TOP_K", run=True
    )
    bridge_hidden_dim: int | None = setting(
        None, "hidden width of the bridge's MLP (default: the decoder's width)", run=True
    )
    lead_token: bool = setting(
        False,
        "start every sequence with <|endoftext|> before the visual tokens, so that a text token holds position 0 "
        "(where a pretrained LM's attention sinks), as LLaVA and Qwen-VL start with text",
        run=True,
    )
    lora_rank: int = setting(
        0,
        "rank of LoRA adapters on the decoder blocks below the top K, whose weights stay frozen (0: none)",
        run=True,
    )
    lora_alpha: float | None = setting(
        None,
        "LoRA scaling: the adapters' update is scaled by alpha / rank (default: 2 x rank, LLaVA's choice)",
        run=True,
    )
    lora_targets: str = setting(
        "all",
        "the linear layers of each block that get adapters: comma-separated q_proj, k_proj, v_proj, o_proj, "
        "gate_proj, up_proj, down_proj, or all (every one of them)",
        run=True,
    )

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_NAMES:
            raise UserError(f"encoder={self.encoder!r} is invalid; accepted: {', '.join(ENCODER_NAMES)}")
        if self.view not in VIEWS:
            raise UserError(f"view={self.view!r} is invalid; accepted: {', '.join(VIEWS)}")
        for key, low in (("top_k", 0), ("num_visual_tokens", 1), ("bridge_hidden_dim", 1), ("lora_rank", 0)):
            value = getattr(self, key)
            if value is None and key == "bridge_hidden_dim":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{key}={value!r} is invalid; expected an integer >= {low}")

        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise UserError(f"lora_alpha={self.lora_alpha!r} is invalid; expected a number > 0")
        parse_targets(self.lora_targets)  # one line naming the accepted layers

    @property
    def lora_scale_alpha(self) -> float:
        """alpha of the adapters' alpha / rank scaling (2 x rank unless --lora-alpha says)."""
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank

    def to_dict(self) -> dict:
        return asdict(self)


def check_top_k(top_k: int, layers: int) -> None:
    """K of the top-K blocks that train: 0 (the language model frozen) up to every block of the decoder."""
    if top_k > layers:
        raise UserError(f"top_k={top_k} is invalid; the decoder has {layers} blocks (accepted: 0..{layers})")


def check_lora(config: VLMConfig, decoder_config) -> None:
    """LoRA settings against the decoder (its `Qwen3Config`; before any weight is loaded, and again when the model is
    built): the adapters go on the blocks below the top K, so K must leave some; the rank fits every adapted layer."""
    if not config.lora_rank:
        return
    L, K = decoder_config.num_hidden_layers, config.top_k
    if K >= L:
        raise UserError(
            f"--lora-rank {config.lora_rank} adapts the blocks below the top K, and --top-k {K} trains all {L}: "
            "lower --top-k, or leave out --lora-rank"
        )
    check_rank(config.lora_rank, parse_targets(config.lora_targets), decoder_config)


def check_visual_tokens(config: VLMConfig, encoder_tokens: int) -> None:
    """The hidden-state bridge pools the encoder's tokens down to N: N cannot exceed them."""
    if config.view == "hidden" and config.num_visual_tokens > encoder_tokens:
        raise UserError(
            f"num_visual_tokens={config.num_visual_tokens} is invalid for the {config.encoder} encoder's hidden "
            f"states: it has {encoder_tokens} tokens (accepted: 1..{encoder_tokens})"
        )


def fresh_bridge(config: VLMConfig, encoder: nn.Module, decoder: Qwen3ForCausalLM) -> nn.Module:
    """An untrained bridge from the encoder's features to the decoder's width, on the decoder's device (initialised
    from torch's random state). Its visual tokens start at the scale of real token embeddings (bridge/adapters.py)."""
    in_dim = encoder.pooled_dim if config.view == "pooled" else encoder.hidden_dim
    target_rms = decoder.model.embed_tokens.weight.detach().float().pow(2).mean().sqrt().item()
    return build_bridge(
        config.view,
        in_dim,
        decoder.config.hidden_size,
        config.num_visual_tokens,
        target_rms=target_rms,
        hidden_dim=config.bridge_hidden_dim,
    ).to(device=decoder.device)


class VisionLanguageModel(nn.Module):
    """Frozen encoder + trainable bridge + Qwen3 decoder whose top K blocks train."""

    # Rows of [rows, vocab] logits the loss holds at once (155 MB in fp32 at Qwen3's vocabulary for 256 rows).
    loss_chunk_size: int = 256

    def __init__(self, config: VLMConfig, encoder: nn.Module, decoder: Qwen3ForCausalLM) -> None:
        super().__init__()
        check_top_k(config.top_k, decoder.config.num_hidden_layers)
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        check_visual_tokens(config, encoder.num_tokens)
        self.bridge = fresh_bridge(config, encoder, decoder)
        self.lora = self.add_lora()
        self.lead_token_id = decoder.config.eos_token_id  # --lead-token: <|endoftext|> at position 0
        eos = self.lead_token_id
        if config.lead_token and (eos is None or not 0 <= eos < decoder.config.vocab_size):
            raise UserError(
                f"--lead-token needs the decoder's end-of-text id (eos_token_id in its config.json: "
                f"{self.lead_token_id}, with {decoder.config.vocab_size} embedding rows)"
            )
        self.freeze()

    # ------------------------------------------------------------------ what trains

    def add_lora(self) -> dict[str, LoRALinear]:
        """LoRA adapters (tiny_decoder/lora.py) on the `lora_targets` layers of every block below the top K, which
        otherwise stay frozen; none at rank 0. The top K blocks train in full, so they get none."""
        if not self.config.lora_rank:
            return {}
        check_lora(self.config, self.decoder.config)
        L, K = self.decoder.config.num_hidden_layers, self.config.top_k
        targets = parse_targets(self.config.lora_targets)
        return add_lora(self.decoder, self.config.lora_rank, self.config.lora_scale_alpha, targets, list(range(L - K)))

    def merge_lora(self) -> int:
        """Fold the adapters into the frozen weights, for inference: the same outputs, no extra cost, nothing left
        to train (tiny_decoder/lora.py: merge_lora). Returns how many layers were merged."""
        merged = merge_lora(self.decoder)
        self.lora = {}
        return merged

    def freeze(self) -> None:
        """Freeze everything but the bridge, the top K decoder blocks and the LoRA adapters."""
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        for layer in self.top_blocks():
            for p in layer.parameters():
                p.requires_grad_(True)
        for p in self.bridge.parameters():
            p.requires_grad_(True)
        for p in self.lora_parameters():
            p.requires_grad_(True)

    def store_frozen_in(self, dtype: torch.dtype) -> int:
        """Store every frozen decoder parameter in `dtype`, in place; what trains (`parameter_groups`) stays as it is,
        fp32. Returns how many parameters changed dtype.

        training/run.py, `--test` and caption.py call it with `runtime.devices.frozen_dtype`: bf16 when the model
        runs under bf16 autocast, which would otherwise cast every fp32 frozen matrix to bf16 on each use (twice per
        step with gradient checkpointing) and keep the copy for the backward pass. Qwen3 is released in bf16, so its
        weights lose nothing (a decoder saved in fp32, as the demo's, is rounded). Qwen3-4B's frozen weights take
        about 8 GB instead of 16.

        What follows from it: the token embeddings (tied with the LM head) are bf16, so the residual stream and the KV
        cache are bf16 too, as when transformers runs the released model in bf16; RMSNorm still normalises in fp32
        (tiny_decoder/model.py, as transformers' Qwen3RMSNorm), and the chunked loss still takes its softmax in
        fp32. A norm gain that trains (a top block's) stays fp32, so its output is fp32 and autocast casts it for the
        next matrix. Such a mixed model runs only under bf16 autocast; fp32 (the CPU's default) changes nothing.
        The vision encoder is left as built: it runs once per image, before training (the features are cached)."""
        trains = {id(p) for group in self.parameter_groups().values() for p in group}
        changed = 0
        for p in self.decoder.parameters():  # a tied embedding / LM head is one Parameter, listed once
            if id(p) not in trains and p.dtype != dtype:
                p.data = p.data.to(dtype)  # the same Parameter (ties, module references kept), its storage replaced
                changed += 1
        return changed

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for adapter in self.lora.values() for p in (adapter.lora_A.weight, adapter.lora_B.weight)]

    def top_blocks(self) -> list[nn.Module]:
        layers = self.decoder.model.layers
        return list(layers[len(layers) - self.config.top_k :]) if self.config.top_k else []

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by group: the bridge, the decoder's top blocks and the LoRA adapters (each its own
        learning rate)."""
        return {
            "bridge": list(self.bridge.parameters()),
            "decoder": [p for layer in self.top_blocks() for p in layer.parameters()],
            "lora": self.lora_parameters(),
        }

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what trains: a checkpoint of megabytes, not of the whole 0.6B model."""
        names = {id(p) for group in self.parameter_groups().values() for p in group}
        return {n: p.detach() for n, p in self.named_parameters() if id(p) in names}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load bridge + top-K weights; any difference in names or shapes is an error that names it."""
        own = self.trainable_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise UserError(
                "checkpoint does not fit this model: "
                + (f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''} " if missing else "")
                + (f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}" if unexpected else "")
                + " (was it trained with another encoder, view or top-K?)"
            )
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise UserError(
                    f"checkpoint does not fit this model: '{name}' has shape {tuple(tensor.shape)} in the "
                    f"checkpoint and {tuple(own[name].shape)} here (another encoder, view or decoder width?)"
                )
        with torch.no_grad():
            params = dict(self.named_parameters())
            for name, tensor in state.items():
                params[name].copy_(tensor)

    def summary(self) -> str:
        """A table of parameter counts per group and whether each trains (the LoRA adapters on a row of their own)."""
        L, K = self.decoder.config.num_hidden_layers, self.config.top_k
        d = self.decoder.model
        adapters = {id(p) for p in self.lora_parameters()}

        def own(module: nn.Module) -> list[nn.Parameter]:
            return [p for p in module.parameters() if id(p) not in adapters]

        rows = [
            (f"vision encoder ({self.config.encoder}, {self.config.view})", own(self.encoder)),
            (f"bridge ({type(self.bridge).__name__})", own(self.bridge)),
            (
                "token embeddings" + (" (tied LM head)" if self.decoder.config.tie_word_embeddings else ""),
                own(d.embed_tokens),
            ),
            (f"decoder blocks 0-{L - K - 1}" if K < L else "decoder blocks (none frozen)", own(d.layers[: L - K])),
            (f"decoder blocks {L - K}-{L - 1} (top {K})" if K else "decoder blocks (top 0)", own(d.layers[L - K :])),
            ("final norm", own(d.norm)),
        ]
        if not self.decoder.config.tie_word_embeddings:
            rows.append(("LM head", own(self.decoder.lm_head)))
        if self.lora:
            c = self.config
            targets = "all" if parse_targets(c.lora_targets) == TARGETS else c.lora_targets
            rows.append((f"LoRA r={c.lora_rank} a={c.lora_scale_alpha:g} ({targets}, blocks 0-{L - K - 1})",
                         self.lora_parameters()))  # fmt: skip
        trains = {id(p) for group in self.parameter_groups().values() for p in group}
        lines = [f"{'group':<44}{'parameters':>14}  trains"]
        total = trainable = 0
        for name, params in rows:
            n = sum(p.numel() for p in params)
            flags = {id(p) in trains for p in params}
            state = "yes" if flags == {True} else "no" if flags <= {False} else "partly"
            lines.append(f"{name:<44}{n:>14,}  {state}")
            total += n
            trainable += sum(p.numel() for p in params if id(p) in trains)
        lines.append(f"{'total':<44}{total:>14,}  {trainable:,} trainable ({100 * trainable / total:.2f}%)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ forward

    def visual_tokens(
        self, pixel_values: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Images [B, 3, H, W] (through the frozen encoder) or cached encoder features -> [B, N, hidden_size]."""
        if features is None:
            if pixel_values is None:
                raise ValueError("pass pixel_values or cached features")
            features = self.encoder(pixel_values.to(self.encoder.device), view=self.config.view)
        bridge_param = next(self.bridge.parameters())
        return self.bridge(features.to(device=bridge_param.device, dtype=bridge_param.dtype))

    def sequence_embeddings(
        self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[visual tokens][text] as the decoder reads it: embeddings [B, N + T, d] of `input_ids` [B, T] after each
        image's N visual tokens. The one place the training sequence is made (the loss, the likelihoods of retrieval,
        explain's teacher-forced rows, and generation's left-padded prompts: `prompt_embeddings`)."""
        visual = self.visual_tokens(pixel_values, features)  # [B, N, d]
        embed = self.decoder.model.embed_tokens
        text = embed(input_ids)  # [B, T, d]
        if not self.config.lead_token:
            return torch.cat([visual.to(text.dtype), text], dim=1)  # [B, N + T, d]
        lead = embed(torch.tensor([[self.lead_token_id]], device=text.device)).expand(len(text), 1, -1)  # [B, 1, d]
        return torch.cat([lead, visual.to(text.dtype), text], dim=1)  # [B, 1 + N + T, d]

    @property
    def prefix_length(self) -> int:
        """Positions before the text: the N visual tokens, and the lead token (`--lead-token`) in front of them."""
        return self.config.num_visual_tokens + int(self.config.lead_token)

    def _targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicting positions and their next tokens, for labels [B, T] after N visual tokens."""
        N = self.prefix_length
        full = F.pad(labels, (N, 0), value=-100)  # [B, N + T]: no label on visual positions (nor the lead token)
        next_tokens = full[:, 1:]  # [B, N + T - 1]: position t predicts token t + 1
        return next_tokens != -100, next_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy over the target tokens of a right-padded batch.

        No attention mask is taken: padding is on the right, after every target, so plain causal attention is exact
        for every position that has a label (and the decoder takes its fastest attention path).
        """
        embeds = self.sequence_embeddings(input_ids, pixel_values, features)
        keep, next_tokens = self._targets(labels)
        # The last position predicts nothing and, attention being causal, no other position reads it: leave it out.
        hidden = self.decoder.hidden_states(inputs_embeds=embeds[:, :-1])  # [B, N + T - 1, d]
        # Logits only where there is a label ([M, vocab], M = label count), and only a chunk of rows at a time:
        # equal to F.cross_entropy(self.decoder.lm_head(hidden[keep]).float(), next_tokens[keep]) in value and
        # gradient, without keeping the [M, vocab] logits for the backward pass (see tiny_decoder/model.py).
        head = self.decoder.lm_head.weight  # [vocab, d]
        return linear_cross_entropy(hidden[keep], head, next_tokens[keep], self.loss_chunk_size)

    @torch.no_grad()
    def sequence_log_likelihood(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean log-probability of each sample's target tokens given its image, [B] (for retrieval)."""
        embeds = self.sequence_embeddings(input_ids, pixel_values, features)
        keep, next_tokens = self._targets(labels)
        hidden = self.decoder.hidden_states(inputs_embeds=embeds[:, :-1])  # [B, N + T - 1, d], as in forward
        return self._mean_log_probs(hidden, keep, next_tokens)

    def _mean_log_probs(self, hidden: torch.Tensor, keep: torch.Tensor, next_tokens: torch.Tensor) -> torch.Tensor:
        """Mean log-probability per row of next_tokens[keep], predicted from hidden [B, T, d]: [B]."""
        head = self.decoder.lm_head.weight  # [vocab, d]
        if torch.is_autocast_enabled(head.device.type):  # cast the 151,936-row head once, not once per chunk
            head = head.to(torch.get_autocast_dtype(head.device.type))
        token_logp = target_log_probs(hidden[keep], head, next_tokens[keep], self.loss_chunk_size)  # [M]
        rows = keep.nonzero()[:, 0]  # which sample each kept position belongs to
        total = torch.zeros(len(hidden), device=token_logp.device).index_add_(0, rows, token_logp)
        return total / keep.sum(1).clamp(min=1)

    def shared_prefix_log_likelihood(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        prefix_len: int,
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`sequence_log_likelihood` of each of B texts given each of I images, [I, B], each image's start run once.

        The first `prefix_len` tokens (the prompt, unlabelled) must be the same in every row. Each image's visual
        tokens and the prompt run through the decoder once (all I images in one batch), into a KV cache of I rows;
        the texts then run once per image, all I x B pairs in one forward pass, each attending to its image's cached
        prefix where it lies (`tiny_decoder/shared_prefix.py`: no per-pair copy of the prefix's keys and values).
        Retrieval scores every caption against every image of a gallery this way: with Qwen3's 16 visual tokens and
        a 2-token prompt, that is 18 fewer positions per (image, caption) pair, and on a GPU a few images' worth of
        pairs per pass keep it busy where one image's captions would not.

        The earlier way copied the prefix's keys and values into I x B rows of a plain KV cache and ran the texts
        after them; BENCHMARKS.md ("Retrieval scoring") compares the two, measured before the copy was removed.
        """
        B, T = input_ids.shape
        if (labels[:, :prefix_len] != -100).any() or (input_ids[:, :prefix_len] != input_ids[:1, :prefix_len]).any():
            raise ValueError("the first prefix_len tokens must be the same unlabelled prompt in every row")
        I = len(features if features is not None else pixel_values)  # noqa: E741 (I images, as in the docstring)
        prefix = self.sequence_embeddings(
            input_ids[:1, :prefix_len].expand(I, -1), pixel_values, features
        )  # [I, N + P, d]
        S = T - prefix_len - 1  # text positions that predict a next token (the text's last token predicts nothing)
        cache = self.decoder.new_kv_cache(I, prefix.shape[1])
        last = self.decoder.hidden_states(inputs_embeds=prefix, kv_cache=cache)[:, -1:]  # [I, 1, d]
        # The prompt's last position predicts the first text token; row i*B + b pairs image i with text b.
        hidden = last[:, None].expand(I, B, 1, last.shape[-1])  # [I, B, 1, d]
        if S > 0:
            text = self.decoder.model.embed_tokens(input_ids[:, prefix_len:-1])  # [B, S, d]
            text_hidden = continuation_hidden_states(self.decoder, cache, text.expand(I, B, S, text.shape[-1]))
            hidden = torch.cat([hidden, text_hidden], dim=2)  # [I, B, 1 + S, d]
        hidden = hidden.reshape(I * B, T - prefix_len, -1)  # [I*B, T - P, d]: position t predicts text token t
        next_tokens = labels[:, prefix_len:].repeat(I, 1)  # [I*B, T - P]
        return self._mean_log_probs(hidden, next_tokens != -100, next_tokens).view(I, B)  # [I, B]

    # ------------------------------------------------------------------ generation

    def prompt_embeddings(
        self, prompts: list[list[int]], pixel_values: torch.Tensor | None = None, features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[visual tokens][prompt] for each image, left-padded: (embeddings [B, W, d], attention mask [B, W]).

        Rows are left-padded (padding before the visual tokens), so every row's next token is in the last column.
        `generate` decodes from these; so does `beam_search` (`tiny_decoder/beam.py`). The sequence is
        `sequence_embeddings`' (the one place it is made), of the prompts left-padded to one length; each row's
        padding is then moved in front of its visual tokens. The mask hides it, so what it holds never matters.
        """
        N, P = self.prefix_length, max(len(p) for p in prompts)
        pads = [P - len(prompt) for prompt in prompts]
        device = self.decoder.device
        ids = torch.tensor([[0] * k + prompt for k, prompt in zip(pads, prompts, strict=True)], device=device)  # [B, P]
        embeds = self.sequence_embeddings(ids, pixel_values, features)  # [B, N + P, d]: [visual][padding][prompt]
        order = torch.stack(  # row i: its k padding positions first, then the visual tokens, then the prompt
            [torch.cat([torch.arange(N, N + k), torch.arange(N), torch.arange(N + k, N + P)]) for k in pads]
        ).to(device)  # [B, N + P]
        embeds = embeds.gather(1, order[..., None].expand(-1, -1, embeds.shape[-1]))  # [B, N + P, d]
        mask = (torch.arange(N + P, device=device)[None] >= torch.tensor(pads, device=device)[:, None]).long()
        return embeds, mask  # [B, W, d], [B, W] with W = N + P

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        eos_token_id: int | None = None,
        **sampling,
    ) -> list[list[int]]:
        """Continue [visual tokens][prompt] for each image; returns the new token ids, cut at end-of-text."""
        embeds, mask = self.prompt_embeddings(prompts, pixel_values, features)
        eos = eos_token_id if eos_token_id is not None else self.decoder.config.eos_token_id
        out = self.decoder.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=eos, **sampling
        )
        return [_cut_at(row.tolist(), eos) for row in out]

    @torch.no_grad()
    def beam_search(
        self,
        prompts: list[list[int]],
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        num_beams: int = 4,
        max_new_tokens: int = 32,
        length_penalty: float = 1.0,
        eos_token_id: int | None = None,
        early_stopping: bool = True,
    ) -> tuple[list[list[int]], torch.Tensor]:
        """The best beam for each image's [visual tokens][prompt] (`tiny_decoder/beam.py`): the new token ids, cut at
        end-of-text, and their length-normalised scores [B]. caption.py and evaluation both decode this way."""
        embeds, mask = self.prompt_embeddings(prompts, pixel_values, features)  # [B, W, d], [B, W]
        eos = eos_token_id if eos_token_id is not None else self.decoder.config.eos_token_id
        sequences, scores = beam_search(
            self.decoder, inputs_embeds=embeds, attention_mask=mask, num_beams=num_beams,
            max_new_tokens=max_new_tokens, length_penalty=length_penalty, eos_token_id=eos,
            early_stopping=early_stopping,
        )  # fmt: skip
        return [_cut_at(row, eos) for row in sequences.tolist()], scores


def _cut_at(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos)] if eos is not None and eos in ids else ids


def build_vlm(
    config: VLMConfig, decoder: Qwen3ForCausalLM, device: torch.device | str = "cpu", seed: int | None = None
) -> VisionLanguageModel:
    """The one assembly of the model, for training, `checkpoints/restore.py` and caption.py alike: the frozen
    encoder `config` names, a fresh bridge (its initialisation drawn from `seed`, after the encoder is built), and
    `decoder`, with everything but the bridge and the top K blocks frozen."""
    encoder = build_encoder(config.encoder, config.encoder_weights)
    if seed is not None:
        torch.manual_seed(seed)
    return VisionLanguageModel(config, encoder, decoder).to(device)
