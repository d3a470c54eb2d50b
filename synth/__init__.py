"""Synthetic training data: a teacher vision-language model captions images and asks and answers questions.

Knowledge distillation through data: a large model (Qwen2.5-VL-3B-Instruct) writes captions and short
question-answer pairs for images, and our small model trains on them next to the human captions. The same idea
made LLaVA's instruction data (GPT-4 writing about COCO images, Liu et al. 2023, https://arxiv.org/abs/2304.08485)
and ShareGPT4V's detailed captions (Chen et al. 2023, https://arxiv.org/abs/2311.12793).

- `prompt.py`: the prompt, and `parse_response`, which checks each answer (JSON, caption, short unique answers).
- `teacher.py`: `QwenTeacher`, Qwen2.5-VL through transformers, batched generation with left padding.
- `run.py`: `list_images` and `generate`, the resumable loop with retries and a progress bar.
- `dataset.py`: append-only JSON-lines shards, the rejected log, resuming, the dataset card (README.md).
- `hub.py`: `push_to_hub` (a private dataset repo by default) and the --dry-run description.
- `__main__.py`: the command line, `python -m synth --images flickr30k --out DIR`.

The data is read back for training by `data/synthetic.py`: `data.load_dataset("flickr30k,synthetic:DIR")`.

Read next: `synth/prompt.py` (what the teacher is asked, and the checks), then `synth/run.py` (the loop).
"""

from .dataset import ShardWriter, card_counts, done_images, read_all, write_card
from .hub import describe_upload, push_to_hub, upload_files
from .prompt import PROMPT_VERSION, ParsedResponse, build_prompt, extract_json_object, parse_response
from .run import ImageItem, RunStats, generate, list_images
from .teacher import DEFAULT_TEACHER, QwenTeacher

__all__ = [
    "DEFAULT_TEACHER",
    "PROMPT_VERSION",
    "ImageItem",
    "ParsedResponse",
    "QwenTeacher",
    "RunStats",
    "ShardWriter",
    "build_prompt",
    "card_counts",
    "describe_upload",
    "done_images",
    "extract_json_object",
    "generate",
    "list_images",
    "parse_response",
    "push_to_hub",
    "read_all",
    "upload_files",
    "write_card",
]
