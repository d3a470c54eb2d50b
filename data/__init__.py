"""Data: Flickr30k in its common layouts, a generated shapes set, splits by image, and training batches.

- `load_dataset(source, cache_dir=...)` -> (`Splits`, `LoadReport`): the one entry point (`loading.py`); `source`
  may be a comma-separated list ("flickr30k,synthetic:OUT"), merged by image.
- `ImageRecord`, `LoadReport` (`records.py`); `load_image`, `drop_bad_images` (`images.py`).
- `generate_shapes` (`shapes.py`): the offline demo's data, captions and questions true of the pixels.
- `read_synthetic` (`synthetic.py`): a teacher model's captions and questions written by `python -m synth`.
- `read_local` (`loading.py`): a local folder in whichever layout it holds, among them COCO's (`read_coco`,
  `coco.py`) and an imagefolder of one's own photos (`read_imagefolder`, `imagefolder.py`).
- `read_hub_dataset`, `read_parquet_folder`, `looks_like_parquet_repo` (`parquet.py`): Parquet dataset repos (what
  `datasets` push_to_hub writes), on the hub (`hf:OWNER/NAME[:SUBSET]`) or downloaded into a folder.
- `split_records`, `Splits` (`splits.py`): random 80/10/10 or Karpathy's split, always by image.
- `make_samples`, `VLMCollator`, `batch_order`, `encode_prompts`, prompts (`batches.py`).

Read next: `data/records.py` (one image and its texts), then `data/batches.py` (from texts to tensors).
"""

from .batches import (
    CAPTION_PROMPT,
    IGNORE_INDEX,
    Sample,
    VLMCollator,
    batch_order,
    encode_prompts,
    make_samples,
    question_prompt,
)
from .coco import read_coco
from .imagefolder import read_imagefolder
from .images import BadImageError, decode_image, drop_bad_images, load_image
from .loading import load_dataset, read_local
from .parquet import looks_like_parquet_repo, read_hub_dataset, read_parquet_folder
from .records import ImageRecord, LoadReport
from .shapes import generate_shapes
from .splits import Splits, split_records
from .synthetic import read_synthetic

__all__ = [
    "BadImageError",
    "CAPTION_PROMPT",
    "IGNORE_INDEX",
    "ImageRecord",
    "LoadReport",
    "Sample",
    "Splits",
    "VLMCollator",
    "batch_order",
    "decode_image",
    "drop_bad_images",
    "encode_prompts",
    "generate_shapes",
    "load_dataset",
    "load_image",
    "looks_like_parquet_repo",
    "make_samples",
    "question_prompt",
    "read_coco",
    "read_hub_dataset",
    "read_imagefolder",
    "read_local",
    "read_parquet_folder",
    "read_synthetic",
    "split_records",
]
