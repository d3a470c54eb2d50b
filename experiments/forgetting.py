"""What learning to see costs the language model: its perplexity on text that no run shows, before and after the run.

A vision-language run changes the decoder only where it trains (the top K blocks, LoRA adapters); those changes are
made for captions and answers, and nothing keeps them right for anything else (catastrophic forgetting, McCloskey and
Cohen 1989; Kirkpatrick et al. 2017, https://arxiv.org/abs/1612.00796). So the measure is the decoder's next-token
perplexity, with no image, on held-out text of another kind:

- the offline demo's text-pretrained LM (`demo-pretrained`): held-out weather reports (`demo/weather.py`), of the
  distribution it read beside the captions;
- a real Qwen3 decoder: `experiments/text/out_of_domain.txt` (a passage on the tides), one document per line.

Captions would not do: tuning on captions lowers their perplexity. A random decoder (`demo`, `random-init:`) knows no
text to forget, so its cells record none. With K = 0 and no LoRA the decoder does not change, and the two
perplexities are equal: the grid's first row checks the measure itself.

Read next: `experiments/runner.py` (which records it for every cell).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkpoints.restore import decoder_source, load_trained
from checkpoints.store import list_checkpoints
from demo.pretrain import DEMO_PRETRAINED, held_out_weather, texts_perplexity
from training.config import TrainConfig
from training.decoders import RANDOM_INIT
from weights_loader import load_qwen3, resolve_checkpoint

OUT_OF_DOMAIN = Path(__file__).parent / "text" / "out_of_domain.txt"


def held_out_text(config: TrainConfig) -> tuple[str, list[str]] | None:
    """(what it is, its documents) for the decoder of `config`, or None for a random decoder (nothing to forget)."""
    if config.decoder == DEMO_PRETRAINED:
        return "held-out weather reports", held_out_weather(config.seed)
    if config.decoder == "demo" or config.decoder.startswith(RANDOM_INIT):  # random weights
        return None
    lines = [line.strip() for line in OUT_OF_DOMAIN.read_text().splitlines() if line.strip()]
    return f"{OUT_OF_DOMAIN.name} (the tides)", lines


def text_perplexity_before_after(config: TrainConfig, run_dir: Path) -> dict[str, Any] | None:
    """The decoder's perplexity on held-out text before the run (the decoder it started from) and after it (with
    what the run's newest checkpoint trained: top-K blocks, LoRA adapters), or None for a random decoder."""
    text = held_out_text(config)
    if text is None:
        return None
    what, texts = text
    checkpoint = list_checkpoints(run_dir)[-1]
    model, tokenizer, sidecar = load_trained(checkpoint)
    base = load_qwen3(resolve_checkpoint(decoder_source(sidecar, checkpoint)))
    return {
        "text": what,
        "documents": len(texts),
        "before": texts_perplexity(base, tokenizer, texts),
        "after": texts_perplexity(model.decoder, tokenizer, texts),
    }
