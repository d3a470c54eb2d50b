"""A rehearsal of the real run at its real size, offline: `make rehearse` (`python -m rehearse`).

Why: `make test` trains tiny models (3 blocks of width 128, a 1-layer ViT, a byte-level BPE of the demo), so nothing
there loads what users load: Qwen3-0.6B-Base's 28 blocks of width 1024 and its 151,936-token vocabulary, a ViT-B/16
or a CLIP ViT-B/32 from their libraries' hub repos, a 260 MB checkpoint, two training processes each holding the
0.6B decoder. Sizes break things that shapes do not: memory, a tied head stored twice, file names in a hub cache,
the real tokenizer's end-of-text, bf16 autocast across 28 blocks. The rehearsal runs the README's commands on all of
that, without the network and without the weights, in a few minutes on a CPU.

What is real: every file name, config value and tensor shape of the releases (Qwen/Qwen3-0.6B-Base, timm's
vit_base_patch16_224.augreg2_in21k_ft_in1k, open_clip's ViT-B-32 openai, Qwen/Qwen2.5-VL-3B-Instruct's widths,
processor and chat template), laid out in a Hugging Face cache as `huggingface_hub` lays out a download; the real
Qwen3 tokenizer (`../shared/qwen3-tokenizer`); the commands, run as a user runs them, in their own processes, with
HF_HUB_OFFLINE=1; Flickr30k's folder layout, Karpathy's split file and its caption lengths.
What is not: the weights are random (so no metric means anything, only that it is a number), the teacher has 2 of
its 36 text blocks and 4 of its 32 vision blocks, the images are 24 small generated JPEGs, and the decoder's random
weights carry a two-token grammar so that generation ends (`rehearse/qwen3.py`).

The parts, in reading order:

- `hub_cache.py`: the hub cache's layout (`models--OWNER--NAME/refs/main`, `snapshots/{commit}/`).
- `qwen3.py`: Qwen3-0.6B-Base's files, with random weights and the end-of-text grammar.
- `encoders.py`: the ViT's and CLIP's files, where timm and open_clip look for them.
- `teacher.py`: Qwen2.5-VL-3B-Instruct's files at reduced depth, for `python -m synth`.
- `flickr.py`: a Flickr30k folder with realistic caption lengths.
- `commands.py`: running a command and measuring its time and peak memory.
- `checks.py`: what is asserted, one line each: checkpoint contents and sizes, memory against an estimate, finite
  numbers, generation ending with end-of-text.
- `__main__.py`: the plan: build, run, check, clean up.

Read next: `rehearse/hub_cache.py`.
"""
