"""A dataset card's `configs:` block: which files make which split, as Hugging Face `datasets` reads it.

A dataset repo (or a local folder laid out like one) may start its `README.md` with YAML front matter that names its
subsets ("configs") and, for each, the files of each split
(https://huggingface.co/docs/hub/datasets-manual-configuration):

    ---
    configs:
    - config_name: default          # the subset `datasets.load_dataset(repo)` picks when none is named
      data_files:
      - split: train
        path: "data/train-*.parquet"  # a glob, or a list of globs
      - split: test
        path: "holdout/*.parquet"
    - config_name: captions_only
      data_files: "captions/*.parquet"  # a plain string or list: all of it is the train split
    ---

When a card names configs, they win over the folder names (`train/`, `test/`, ...), as in `datasets`. A config marked
`default: true`, else the one called `default`, else the only one, is the one used when the user names none
(`hf:OWNER/NAME:SUBSET` names one).

Read next: `data/parquet.py` (Parquet repos on the hub), `data/imagefolder.py` (a folder of one's own images).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.repocard import metadata_load

from errors import UserError

CARD_FILE = "README.md"


@dataclass(frozen=True)
class Configs:
    """A card's `configs:`: each config's {split name: [glob patterns, relative to the card's folder]}, and the config
    marked `default: true`, if one is."""

    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    marked_default: str | None = None
    card: Path | None = None

    def default(self) -> str:
        """The config used when none is named: the one marked `default: true`, else "default", else the only one."""
        if self.marked_default is not None:
            return self.marked_default
        if "default" in self.files or len(self.files) == 1:
            return "default" if "default" in self.files else next(iter(self.files))
        raise UserError(
            f"{self.card} has several subsets ({', '.join(self.files)}) and none is the default; name one as "
            f"SOURCE:SUBSET, e.g. :{next(iter(self.files))}"
        )


def card_configs(folder: Path) -> Configs:
    """The `configs:` of `folder/README.md`, read once; empty when it has no `configs:` block (or no card)."""
    card = Path(folder) / CARD_FILE
    if not card.is_file():
        return Configs()
    try:
        metadata = metadata_load(card) or {}
    except Exception as err:  # YAML errors differ by version; the card is the user's, so say which file
        raise UserError(f"cannot read the YAML front matter of {card}: {str(err).splitlines()[0]}") from err
    configs = metadata.get("configs") if isinstance(metadata, dict) else None
    if not configs:
        return Configs(card=card)
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        raise UserError(f"{card}: 'configs' must be a list of {{config_name, data_files}} entries")
    parsed: dict[str, dict[str, list[str]]] = {}
    for config in configs:
        name = str(config.get("config_name", "default"))
        parsed[name] = _data_files(config.get("data_files"), f"{card} config {name!r}")
    marked = [str(c.get("config_name", "default")) for c in configs if c.get("default")]
    return Configs(parsed, marked[0] if marked else None, card)


def _data_files(value: object, where: str) -> dict[str, list[str]]:
    """`data_files` in any of the card's forms -> {split: [patterns]}."""
    if isinstance(value, str):
        return {"train": [value]}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {"train": list(value)}
    if isinstance(value, dict):  # {split: pattern or [patterns]}, an older form
        return {str(k): [v] if isinstance(v, str) else list(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, dict) and "split" in v and "path" in v for v in value):
        return {str(v["split"]): [v["path"]] if isinstance(v["path"], str) else list(v["path"]) for v in value}
    raise UserError(f"{where}: 'data_files' must be a path, a list of paths, or a list of {{split, path}} entries")
