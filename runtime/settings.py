"""Settings that are also command-line flags: each field carries its own help, environment key and role.

A run's configuration is a few dataclasses, each owned by the code it configures: the model's `VLMConfig`
(bridge/vlm.py), the evaluation's `EvalOptions` (evaluation/protocol.py), the upload's `HubUpload`
(checkpoints/share.py), and the training run's own `TrainConfig` (training/config.py), which holds the others as
parts. A field is declared once, with `setting(...)`:

    top_k: int = setting(3, "how many of the decoder's top blocks train", env="TOP_K")

and everything else is read from that declaration: the flag (`--top-k`), its `--help` line, its type (from the
annotation, `int` here: `typing.get_type_hints`), the environment key that may set it, and whether it is one of
the settings that say what a run trains (`run=True`: `--resume` continues only a run with equal values).

`parse_value` turns the text of a flag or an environment variable into the annotated type, or raises one line
naming the flag and what it accepts (never `type=bool`, for which `bool("False")` is True).

Reference: the same pattern (help and metadata on the field) in transformers' `HfArgumentParser` and in
`simple_parsing`; here it stays small enough to read.

Read next: `training/config.py` (the training configuration, built from these fields).
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, field
from typing import Any

from errors import UserError


def setting(default: Any, help: str, *, env: str | None = None, run: bool = False) -> Any:
    """A dataclass field that is also a flag: its `default`, its `--help` line, the environment variable that may
    set it (`env`), and whether it says what a run trains (`run`: compared by `--resume` and when a run is picked)."""
    return field(default=default, metadata={"help": help, "env": env, "run": run})


def field_type(owner: type, f: Field) -> tuple[type, bool]:
    """The annotated type of a field, as (base type, whether None is accepted): `int | None` is (int, True).
    `bool | str` (`--resume`, which takes `auto`) is (str, False): its flag is parsed by its own rule."""
    hint = typing.get_type_hints(owner)[f.name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else ()
    if not args:
        return hint, False
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    return (kinds[0] if len(kinds) == 1 else str), optional


EXPECTED = {int: "an integer", float: "a number", bool: "true or false"}


def parse_value(owner: type, f: Field, raw: str, source: str) -> Any:
    """The value of field `f` of `owner` that the text `raw` means; `source` (the flag or environment key) names
    it in the error. `none` (or nothing) is None where the field accepts None."""
    kind, optional = field_type(owner, f)
    if optional and raw.strip().lower() in ("", "none"):
        return None
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind in (int, float):
            return kind(raw)
    except ValueError:
        raise UserError(f"{source}={raw!r} is invalid; expected {EXPECTED[kind]}") from None
    return raw


def default_of(f: Field) -> Any:
    """A field's default (its factory's value for a mutable one)."""
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
