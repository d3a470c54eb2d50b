"""The offline demo's own pieces: what `python train.py --demo` builds instead of downloading.

* `decoders`: a tiny Qwen3-shaped decoder (3 blocks, d=128) and a byte-level BPE learned from the shapes set;
* `tokenizer`: that BPE's trainer (`train_bpe_tokenizer`; `<|endoftext|>` as `EOS_TOKEN`);
* `report`: the demo's verdict, the held-out metrics beside the same model's with the images shuffled;
* `pretrain`: the text-pretrained variant of the decoder (`--decoder demo-pretrained`): the tiny Qwen3 trained on
  the training split's captions and answers alone, built once into the cache.

The data is the generated shapes set (`data/shapes.py`); the settings are `training/config.py: DEMO_SETTINGS`.

Read next: `docs/demo.md`, the demo's recipe and what made it learn.
"""
