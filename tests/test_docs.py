"""The docs say what the code does: every flag they name exists in its command, and the code blocks meant to run, run.

**Flags.** README.md, docs/*.md, BENCHMARKS.md and EXPERIMENTS.md are read as Markdown: fenced code blocks line by
line, inline code span by span, and the prose between. A command line (`python train.py ...`, `caption.py ...`,
`python -m experiments ...`, `torchrun ... train.py ...`, `#SBATCH ...`) has its flags checked against that command's
own parser (`COMMANDS`), or, for another program, against the flags listed for it (`OTHER_PROGRAMS`). A flag named
on its own (`--eval-images`, in a table or a sentence) must belong to one of the commands its page is about
(`PAGES`), or to another program's list. A renamed or removed flag then fails here, with the page and line.

**Code blocks that run.** A fenced `python` block whose line before the fence is exactly `RUNS` (an HTML comment,
invisible on the rendered page) is meant to run as written. The blocks of one page run in order, in one namespace,
as a reader would paste them into one Python session (the way the notebooks run top to bottom in one kernel,
tests/test_notebooks.py); all pages run in one fresh Python process, offline (`HF_HUB_OFFLINE=1`), started in a
temporary folder that holds what the blocks name:

- `photo.jpg` and `photo.png`: a held-out image of the session's demo run (the shapes set);
- `../.data/models/runs/demo/`: that run's folder (its newest checkpoint), where a checkout's runs are;
- `hf:me/tiny-vlm-vit-top3`: that checkpoint under the names a push gives it (`checkpoint.safetensors`,
  `checkpoint.json`), in a hub cache laid out as huggingface_hub lays out a download (`HF_HOME`).

Keep such blocks cheap: import, load, call; never train.

Read next: `tests/test_docs_numbers.py` (the numbers the docs quote, against their results files).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO

RUNS = "<!-- test: runs -->"  # the line before a ```python fence whose block tests/test_docs.py runs

PAGES_READ = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "BENCHMARKS.md",
    REPO / "EXPERIMENTS.md",
]

BENCHES = ("decoder", "generation", "train_step", "gpu", "retrieval", "feature_cache", "feature_extraction",
           "data_loading", "run_all", "memory")  # fmt: skip

# The project's commands: how the docs spell them -> (module, the function that builds its parser).
COMMANDS = {
    "train.py": ("training.config", "build_parser"),
    "caption.py": ("caption", "build_parser"),
    "experiments": ("experiments.__main__", "build_parser"),
    "synth": ("synth.__main__", "build_parser"),
    "explain.pointing": ("explain.pointing.__main__", "build_parser"),
    "weights_loader.py": ("weights_loader", "build_parser"),
    "data.inspect": ("data.inspect", "build_parser"),
    "demo.tables": ("demo.tables", "build_parser"),
} | {f"bench.{name}": (f"bench.{name}", "build_parser") for name in BENCHES}

# Other programs the docs show, with the flags the docs give them (checked by hand against each program's docs).
OTHER_PROGRAMS = {
    "torchrun": {"--standalone", "--nproc_per_node", "--nnodes", "--node_rank", "--rdzv_backend", "--rdzv_endpoint"},
    "sbatch": {"--job-name", "--gres", "--time", "--signal", "--requeue", "--open-mode", "--output"},
    "hf": {"--local-dir", "--repo-type"},
    "pip": {"-e", "--upgrade", "--quiet"},
    "pytest": {"-n", "--dist", "--no-loadscope-reorder", "-m"},
    "ssh": {"-L"},
    "rehearse": {"--keep"},  # python -m rehearse: a parser of its own (rehearse/__main__.py: parse), no build_parser
}

# The commands each page is about: a flag named on its own there belongs to one of them (or to OTHER_PROGRAMS).
ALL_BENCHES = tuple(f"bench.{name}" for name in BENCHES)
PAGES = {
    "README.md": ("train.py", "caption.py", "data.inspect"),
    "docs/captioning.md": ("caption.py", "train.py"),
    "docs/data.md": ("train.py", "data.inspect"),
    "docs/decoder.md": ("weights_loader.py",),
    "docs/demo.md": ("train.py", "demo.tables"),
    "docs/evaluation.md": ("train.py",),
    "docs/experiments.md": ("experiments", "train.py"),
    "docs/explain.md": ("caption.py", "explain.pointing", "train.py"),
    "docs/memory.md": ("bench.memory", "train.py"),
    "docs/performance.md": ALL_BENCHES,
    "docs/reliability.md": ("train.py", "caption.py"),
    "docs/sharing.md": ("train.py", "caption.py"),
    "docs/synthetic-data.md": ("synth", "train.py"),
    "docs/testing.md": ("train.py", "rehearse"),
    "docs/training.md": ("train.py",),
    "docs/vision.md": ("train.py",),
    "BENCHMARKS.md": (*ALL_BENCHES, "train.py"),
    "EXPERIMENTS.md": ("experiments", "train.py", "explain.pointing"),
}

FENCE = re.compile(r"^\s*```(\S*)\s*$")
INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")  # a code span, which may wrap onto the next lines of its paragraph
LONG_FLAG = re.compile(r"(?<![\w`/-])--[a-z][a-z0-9_-]*")
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Mention:
    """A flag where a page names it: in `command`'s command line, or on its own (`command` None)."""

    page: str
    line: int
    flag: str
    command: str | None

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.flag}" + (
            f" (in a {self.command} command line)" if self.command else ""
        )


# ------------------------------------------------------------------------------------------- reading the Markdown


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str], str]]:
    """(language, first line number, lines, the line before the fence) of every fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if FENCE.match(lines[j]))
        yield opened.group(1), i + 2, lines[i + 1 : end], lines[i - 1].strip() if i else ""
        i = end + 1


def outside_fences(text: str) -> str:
    """The page with every fenced block's lines blanked (line numbers kept)."""
    lines = text.splitlines()
    for _, first, block, _ in fenced_blocks(text):
        for j in range(first - 1, first - 1 + len(block)):
            lines[j] = ""
        lines[first - 2] = lines[first - 1 + len(block)] = ""  # the fences
    return "\n".join(lines)


def split_words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote in prose-like text
        return line.split()


def commands_in(words: list[str]) -> Iterator[tuple[str | None, list[str]]]:
    """(command, its arguments) for each command of a shell line's words; command None for words that are no
    command (prose, output), whose flags are then named on their own."""
    segment: list[str] = []
    for word in [*words, "&&"]:
        if word not in SEPARATORS:
            segment.append(word)
            continue
        yield from command_of(segment)
        segment = []


def command_of(words: list[str]) -> Iterator[tuple[str | None, list[str]]]:
    while words and (re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]) or words[0] in ("srun", "time", "exec")):
        words = words[1:]  # environment assignments, and programs that run the next one
    if not words:
        return
    program, rest = Path(words[0]).name, words[1:]
    if program in ("python", "python3"):
        if rest[:1] == ["-c"]:
            return  # Python code, not flags
        if rest[:1] == ["-m"] and len(rest) > 1:
            module = rest[1]
            yield (module if module in COMMANDS or module in OTHER_PROGRAMS else None), rest[2:]
            return
        if rest and rest[0].endswith(".py"):
            program, rest = Path(rest[0]).name if not rest[0].startswith("bench/") else rest[0], rest[1:]
            program = f"bench.{Path(program).stem}" if program.startswith("bench/") else program
            yield (program if program in COMMANDS else None), rest
            return
    if program == "torchrun":
        script = next((i for i, w in enumerate(rest) if w.endswith(".py")), len(rest))
        yield "torchrun", rest[:script]
        if script < len(rest):
            yield from command_of(["python", *rest[script:]])
        return
    if program in COMMANDS:
        yield program, rest
    elif program in OTHER_PROGRAMS:
        yield program, rest
    else:
        yield None, words


def flags_of(arguments: list[str], command: str | None) -> list[str]:
    """The flags among a command's arguments: every `--long` one, and `-x` ones of the commands (not of prose)."""
    found = []
    for word in arguments:
        if re.fullmatch(r"--[a-zA-Z][\w-]*(=.*)?", word):
            found.append(word.split("=", 1)[0])
        elif command is not None and re.fullmatch(r"-[a-zA-Z]", word):
            found.append(word)
    return found


def shell_line_mentions(page: str, number: int, line: str) -> Iterator[Mention]:
    if line.lstrip().startswith("#SBATCH"):
        for flag in flags_of(line.split()[1:], "sbatch"):
            yield Mention(page, number, flag, "sbatch")
        return
    for command, arguments in commands_in(split_words(line)):
        for flag in flags_of(arguments, command):
            yield Mention(page, number, flag, command)


def mentions(text: str, page: str) -> Iterator[Mention]:
    """Every flag a page names (`text`, the Markdown of `page`), with the command it is named for."""
    for language, first, lines, _ in fenced_blocks(text):
        if language == "python":
            continue  # Python code: no command lines (its runnable blocks run below)
        joined, start = "", first
        for offset, line in enumerate(lines):
            if not joined:
                start = first + offset
            if line.rstrip().endswith("\\"):  # a command continued on the next line
                joined += line.rstrip()[:-1] + " "
                continue
            yield from shell_line_mentions(page, start, joined + line)
            joined = ""
    prose = outside_fences(text)
    for span in INLINE.finditer(prose):
        number = prose.count("\n", 0, span.start()) + 1
        yield from shell_line_mentions(page, number, span.group(1).replace("\n", " "))
    bare = INLINE.sub(lambda m: "\n" * m.group(0).count("\n"), prose)  # code spans out, line numbers kept
    for number, line in enumerate(bare.splitlines(), 1):
        for flag in LONG_FLAG.findall(line):
            yield Mention(page, number, flag, None)


# --------------------------------------------------------------------------------------------------------- the checks


def parser_flags() -> dict[str, set[str]]:
    """Each command's flags, from its own parser."""
    flags = {}
    for name, (module, function) in COMMANDS.items():
        parser = getattr(importlib.import_module(module), function)()
        flags[name] = {s for action in parser._actions for s in action.option_strings}
    return flags


def wrong(mention: Mention, flags: dict[str, set[str]]) -> str | None:
    """Why a mention names a flag its command does not have; None when it has it."""
    known = flags | OTHER_PROGRAMS
    if mention.command is not None:
        if mention.flag in known[mention.command]:
            return None
        return f"{mention}: {mention.command} has no {mention.flag}"
    page_commands = PAGES[mention.page]
    if any(mention.flag in known[c] for c in page_commands) or any(mention.flag in f for f in OTHER_PROGRAMS.values()):
        return None
    return f"{mention}: none of {', '.join(page_commands)} has it"


def test_the_reader_finds_flags_in_command_lines_code_spans_and_prose():
    text = (
        "Run `python train.py --demo --top-k 2` or `caption.py --serve`; `--eval-images N` alone; plain --seed.\n"
        "A span that wraps: `python -m explain.pointing\n--best-head`.\n"
        "```bash\n"
        "HF_TOKEN=x torchrun --standalone --nproc_per_node 2 train.py --epochs 1 \\\n"
        "    --batch-size 8   # a comment --not-a-flag\n"
        "python -m experiments transfer --jobs 2 && hf download Q --local-dir D\n"
        "#SBATCH --requeue\n"
        "python -c \"import x; x.f('--ignored')\"\n"
        "```\n"
        "```\n"
        "error: --host 0.0.0.0 needs a login\n"
        "```\n"
    )
    found = {(m.line, m.flag, m.command) for m in mentions(text, "page.md")}
    assert found == {
        (1, "--demo", "train.py"), (1, "--top-k", "train.py"), (1, "--serve", "caption.py"),
        (1, "--eval-images", None), (1, "--seed", None), (2, "--best-head", "explain.pointing"),
        (5, "--standalone", "torchrun"), (5, "--nproc_per_node", "torchrun"), (5, "--epochs", "train.py"),
        (5, "--batch-size", "train.py"), (7, "--jobs", "experiments"), (7, "--local-dir", "hf"),
        (8, "--requeue", "sbatch"), (12, "--host", None),
    }  # fmt: skip


def test_a_flag_a_command_lacks_is_found():
    flags = {"train.py": {"--grad-checkpointing"}, "caption.py": {"--serve"}}
    assert wrong(Mention("docs/training.md", 3, "--gradient-checkpointing", "train.py"), flags)
    assert wrong(Mention("docs/training.md", 3, "--gradient-checkpointing", None), flags)
    assert wrong(Mention("docs/training.md", 3, "--serve", None), flags)  # caption.py's, and the page is train.py's
    assert wrong(Mention("docs/training.md", 3, "--grad-checkpointing", None), flags) is None
    assert wrong(Mention("docs/training.md", 3, "--requeue", None), flags) is None  # sbatch's


def test_every_page_says_which_commands_it_is_about():
    pages = {path.relative_to(REPO).as_posix() for path in PAGES_READ}
    assert pages == set(PAGES), f"add {sorted(pages - set(PAGES))} to PAGES; remove {sorted(set(PAGES) - pages)}"


def test_every_flag_the_docs_name_exists_in_its_command():
    flags = parser_flags()
    found = [m for path in PAGES_READ for m in mentions(path.read_text(), path.relative_to(REPO).as_posix())]
    assert len(found) > 300  # the reader reads the pages (about 450 mentions when this was written)
    problems = [problem for m in found if (problem := wrong(m, flags))]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------- code blocks that run

HUB_REPO = "me/tiny-vlm-vit-top3"  # the repo the runnable blocks name
SHA = "0123456789abcdef0123456789abcdef01234567"  # the commit of the cached snapshot (any 40 hex digits)

# Runs each page's blocks in order in a namespace of its own; a failing block prints where it is and exits 1.
DRIVER = """
import json, sys, traceback
for page, blocks in json.load(sys.stdin):
    namespace = {"__name__": "__main__"}
    for line, code in blocks:
        try:
            exec(compile(code, f"{page}, the block at line {line}", "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(1)
"""


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(first line, code) of each block the page marks as meant to run."""
    return [(first, "\n".join(lines)) for language, first, lines, before in fenced_blocks(text) if before == RUNS]


def test_the_marker_picks_the_blocks_meant_to_run():
    text = f"A.\n\n{RUNS}\n```python\nx = 1\n```\n\n```python\nnot run\n```\n{RUNS}\n\n```python\nnor this\n```\n"
    assert runnable_blocks(text) == [(5, "x = 1")]


def docs_workspace(root: Path, trained_demo, demo_scenes) -> Path:
    """The folder the blocks run in, with what they name around it (see the module docstring); returns HF_HOME."""
    from PIL import Image

    _, _, checkpoint = trained_demo
    here = root / "checkout"
    here.mkdir()
    Image.open(demo_scenes[0][0]).convert("RGB").save(here / "photo.png")
    Image.open(demo_scenes[0][0]).convert("RGB").save(here / "photo.jpg")
    run = root / ".data" / "models" / "runs" / "demo"
    run.mkdir(parents=True)
    storage = root / "hf" / "hub" / f"models--{HUB_REPO.replace('/', '--')}"
    snapshot = storage / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(SHA)
    for suffix in (".safetensors", ".json"):
        shutil.copy(checkpoint.with_suffix(suffix), run / checkpoint.with_suffix(suffix).name)
        shutil.copy(checkpoint.with_suffix(suffix), snapshot / f"checkpoint{suffix}")
    return root / "hf"


def test_the_code_blocks_meant_to_run_run(trained_demo, demo_scenes, tmp_path):
    pages = [(p.relative_to(REPO).as_posix(), runnable_blocks(p.read_text())) for p in PAGES_READ]
    pages = [(page, blocks) for page, blocks in pages if blocks]
    assert {page for page, _ in pages} >= {"docs/sharing.md", "docs/explain.md"}
    hf_home = docs_workspace(tmp_path, trained_demo, demo_scenes)
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "OUTPUT_DIR_MODELS")}
    environment |= {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER], input=json.dumps(pages), cwd=tmp_path / "checkout", env=environment,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "checkout" / "maps" / "photo.png").is_file()  # what docs/explain.md's block says it writes
