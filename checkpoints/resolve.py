"""Which checkpoint a command means: one function, the same forms and the same one-line errors in every command.

Every command that takes a checkpoint (`train.py --test`, `--push-to-hub` and `--init-from`, `caption.py
--checkpoint`, `python -m explain.pointing --checkpoint`) passes what the user typed to `named_checkpoint`:

    RUN/3_vit_top3.safetensors   a checkpoint's weights, with its sidecar RUN/3_vit_top3.json beside them
    RUN/3_vit_top3.json          its sidecar: the same checkpoint
    RUN                          a run's folder ({output_dir}/runs/NAME): its newest complete checkpoint
    OUTPUT                       an output folder (it holds runs/): the newest run whose settings match the
                                 command's (`find_run`), or one line naming the candidates when several differ
    hf:OWNER/NAME                a checkpoint pushed with `train.py --push-to-hub`: checked for its form here and
                                 downloaded into the hub cache when it is read (`checkpoint_file` reads it now)
    latest                       OUTPUT with the command's own output folder (`--output-dir`)

A folder holding a downloaded hub checkpoint (`checkpoint.safetensors` with `checkpoint.json`) is a run folder too,
and `OUTPUT/runs` is taken for OUTPUT. A training state (`3_vit_top3.state.pt`: optimizer, schedule, data position)
is not a checkpoint to load: the error names the weights beside it. "Complete" is `checkpoints.store`'s: a sidecar
(the commit marker of a save) beside weights of the same step.

"The command's settings" are what it asks for: `train.py --test` and `--push-to-hub` the encoder and K and every
other run setting typed (`TrainConfig.selection`), `--init-from` the settings that shape the bridge, caption.py and
the pointing game none (the newest run of all, when the runs do not differ).

Read next: `checkpoints/restore.py` (the model a resolved checkpoint describes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checkpoints.store import (
    HUB_PREFIX,
    HUB_SIDECAR,
    HUB_WEIGHTS,
    RUNS_DIR,
    Run,
    complete_epoch,
    find_run,
    is_hub_checkpoint,
    list_checkpoints,
    local_checkpoint,
    read_run,
)
from errors import UserError
from runtime.env import DEFAULT_OUTPUT_DIR, absolute

LATEST = "latest"
FORMS = "a .safetensors checkpoint or its .json sidecar, a run folder, an output folder, hf:OWNER/NAME, or latest"
STATE_SUFFIX = ".state.pt"


def named_checkpoint(
    spec: str | Path,
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    want: Mapping[str, Any] | None = None,
    flag: str = "--checkpoint",
    *,
    closed_epoch: bool = False,
) -> Path | str:
    """The checkpoint `spec` names (see the module docstring): the absolute path of its `.safetensors` file, or
    `hf:OWNER/NAME` unchanged (its form checked; `read_checkpoint` and `load_trained` download it when they read it).

    `output_dir` is where `latest` looks; `want` the command's settings that pick a run from an output folder;
    `flag` names the option in the error lines. With `closed_epoch`, a run's newest checkpoint that closed its
    epoch (`--push-to-hub`: one saved mid-epoch has no evaluation for the model card). Raises `UserError`, one line.
    """
    text = str(spec)
    if is_hub_checkpoint(text):
        import hub  # the hub client, only when a hub checkpoint is named

        hub.check_repo_id(text.removeprefix(HUB_PREFIX), label=f"{flag} {text!r}", form=f"{HUB_PREFIX}OWNER/NAME")
        return text
    if text == LATEST:
        return newest(find_run(output_dir, want or {}, flag=flag), flag, closed_epoch)
    path = absolute(text)
    if path.is_dir():
        return newest(run_in_folder(path, want or {}, flag), flag, closed_epoch)
    return checkpoint_in_file(path, flag)


def checkpoint_file(
    spec: str | Path,
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    want: Mapping[str, Any] | None = None,
    flag: str = "--checkpoint",
    *,
    closed_epoch: bool = False,
) -> Path:
    """`named_checkpoint`, and a hub checkpoint downloaded (once, into the hub cache): a local `.safetensors` path,
    for the commands that read the checkpoint at once (caption.py, the pointing game, `--push-to-hub`)."""
    return local_checkpoint(named_checkpoint(spec, output_dir, want, flag, closed_epoch=closed_epoch))


def run_in_folder(folder: Path, want: Mapping[str, Any], flag: str) -> Run:
    """The run a folder means: an output folder's (it holds runs/; or it is runs/ itself) newest run matching `want`,
    or the folder itself when it holds checkpoints (a run folder, an old flat output folder, a downloaded hub
    checkpoint)."""
    if folder.name == RUNS_DIR and not list_checkpoints(folder):
        folder = folder.parent
    if (folder / RUNS_DIR).is_dir():
        return find_run(folder, want, flag=flag)
    run = read_run(folder)
    if run is not None:
        return run
    if (folder / HUB_WEIGHTS).is_file() and (folder / HUB_SIDECAR).is_file():  # a pushed checkpoint's snapshot
        return Run(folder.name, folder, (folder / HUB_WEIGHTS,), {})
    raise UserError(
        f"{flag} {folder}: no checkpoint in this folder (a run folder holds NAME.safetensors with its NAME.json "
        f"sidecar; an output folder holds {RUNS_DIR}/); accepted: {FORMS}"
    )


def newest(run: Run, flag: str, closed_epoch: bool) -> Path:
    """A run's newest complete checkpoint; with `closed_epoch`, its newest that closed an epoch."""
    if not closed_epoch:
        return run.latest
    closed = [path for path in run.checkpoints if complete_epoch(path)]
    if not closed:
        raise UserError(
            f"run {run.name} in {run.directory} has no checkpoint that closed an epoch (only mid-epoch saves); "
            f"finish an epoch, or name a mid-epoch one with {flag} {run.latest}"
        )
    return closed[-1]


def checkpoint_in_file(path: Path, flag: str) -> Path:
    """The weights of the checkpoint a file names: its `.safetensors` file or its `.json` sidecar, both present.
    A training state, another file, or nothing at all is refused in one line saying what was expected."""
    if path.name.endswith(STATE_SUFFIX):
        weights = path.with_name(path.name.removesuffix(STATE_SUFFIX) + ".safetensors")
        raise UserError(
            f"{flag} {path} is a checkpoint's training state (optimizer, schedule, data position), not a checkpoint "
            f"to load; pass its weights, {weights}, or its run folder, {path.parent}"
        )
    if not path.exists():
        raise UserError(f"{flag} {path}: no such file or folder; accepted: {FORMS}")
    if path.suffix not in (".safetensors", ".json"):
        raise UserError(f"{flag} {path} is not a checkpoint; accepted: {FORMS}")
    weights, sidecar = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not weights.is_file():
        raise UserError(f"{flag} {path}: no weights {weights.name} beside this sidecar; the checkpoint is incomplete")
    if not sidecar.is_file():
        raise UserError(
            f"{flag} {path}: no sidecar {sidecar.name} beside it; it is incomplete or not a checkpoint of train.py"
        )
    return weights
