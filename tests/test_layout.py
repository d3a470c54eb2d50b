"""The shape of the code: every module imports only its own layer or the layers below, and nothing imports in a
circle. A reader can then read the packages bottom-up (the README's reading order) without meeting a module that
depends on one they have not read yet, and the entry points (train.py, caption.py) are the only tops.

And none of it is installed: the project runs from the checkout (pyproject.toml installs the dependencies only), so
none of its top-level names (`data`, `evaluation`, `train`, ...) lands in site-packages beside another package's."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO

# Low to high. A module may import its own layer and any layer below it.
LAYERS = [
    {"errors", "runtime", "lr_schedule"},
    {"tiny_decoder", "data", "metrics", "hub"},
    {"weights_loader", "vision"},
    {"bridge"},
    {"evaluation", "checkpoints", "demo"},
    {"training"},
    {"experiments", "synth", "bench", "explain", "rehearse"},
    {"captioning"},  # the library and the page under caption.py (it draws explain's maps)
    {"train", "caption"},  # the entry points: nothing imports them
]
LAYER = {package: i for i, packages in enumerate(LAYERS) for package in packages}


def project_modules() -> dict[str, Path]:
    """module name -> file, for every Python file of the project (tests and the virtual environment excluded)."""
    modules = {}
    for path in REPO.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[0] in ("tests", "notebooks") or parts[0].startswith("."):
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `name` imports anywhere in its file (inside functions too; not the imports for type
    checkers only, under `if TYPE_CHECKING:`, which never run, nor those of a script's `if __name__ == "__main__":`
    block, which runs as the module `__main__`, after the module's own imports)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            "TYPE_CHECKING" in ast.unparse(node.test) or "__main__" in ast.unparse(node.test)
        ):
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .adapters import ...
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name` imports pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_every_package_has_a_layer():
    top_level = {name.split(".")[0] for name in project_modules()}
    assert top_level <= set(LAYER), f"add {sorted(top_level - set(LAYER))} to LAYERS"


def test_no_module_imports_a_layer_above_it():
    modules = project_modules()
    upward = []
    for name, path in modules.items():
        for target in imports(name, path, modules):
            if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]]:
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_there_are_no_import_cycles():
    modules = project_modules()
    graph = {name: imports(name, path, modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(name) :] + [name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_checks_find_what_they_look_for(tmp_path):
    """The import parser sees plain, from-, relative and function-level imports (else the tests above pass
    vacuously)."""
    modules = project_modules()
    assert imports("train", modules["train"], modules) >= {"training.run", "errors"}
    assert "bridge.adapters" in imports("bridge.vlm", modules["bridge.vlm"], modules)  # from .adapters import
    captioner = imports("captioning.captioner", modules["captioning.captioner"], modules)
    assert "checkpoints.restore" in captioner  # inside a method
    assert "tiny_decoder.generate" in imports("tiny_decoder.model", modules["tiny_decoder.model"], modules)
    explanation = imports("explain.explanation", modules["explain.explanation"], modules)
    assert "explain.attention" in explanation and "explain" not in explanation  # from . import attention


# ---------------------------------------------------------------------------------------- the project is not installed

# Run by a fresh interpreter: each name given that it can import, and from where (a package's folder, a module's file).
FIND_SPECS = """
import importlib.util, sys
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    if spec is not None:
        print(name, spec.origin if spec.has_location else (list(spec.submodule_search_locations or []) or [""])[0])
"""


def importable_from_the_checkout(names: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """Which of `names` a fresh interpreter started in `cwd` with `env` imports from this checkout's files."""
    out = subprocess.run([sys.executable, "-c", FIND_SPECS, *names], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout  # fmt: skip
    found = [line.split(" ", 1) for line in out.splitlines()]
    return [name for name, where in found if where and Path(where).resolve().is_relative_to(REPO)]


def shipped(files: list[importlib.metadata.PackagePath], names: list[str]) -> list[str]:
    """Which of `names` a distribution's files put at the top of site-packages (`data/...`, `train.py`)."""
    return sorted({file.parts[0].removesuffix(".py") for file in files} & set(names))


def test_the_project_is_not_installed_into_site_packages(tmp_path):
    """`pip install -e '.[dev]'` installs the dependencies and the project's metadata only: the distribution holds
    none of the checkout's top-level names, and outside the checkout (no PYTHONPATH) none of them imports from it, as
    an editable install's finder or a .pth file would make it."""
    names = sorted({name.split(".")[0] for name in project_modules()})
    assert {"data", "evaluation", "train", "errors", "training"} <= set(names)
    # The installed distribution's files (none when the dependencies were installed some other way). Only
    # site-packages is searched: the checkout, on the path here, holds the build's tiny_vlm.egg-info, a list of sources.
    site_packages = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), site.getusersitepackages()}
    installed = importlib.metadata.distributions(name="tiny-vlm", path=sorted(site_packages))
    files = [file for distribution in installed for file in distribution.files or []]
    assert not shipped(files, names), f"pyproject.toml installs {shipped(files, names)} into site-packages"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    assert importable_from_the_checkout(names, tmp_path, env) == []

    # The checks find what they look for: the checkout on the path, and a wheel that ships `data/` and `train.py`.
    on_the_path = {**env, "PYTHONPATH": str(REPO)}
    assert importable_from_the_checkout(["data", "train"], tmp_path, on_the_path) == ["data", "train"]
    wheel = ["data/__init__.py", "train.py", "tiny_vlm-0.1.0.dist-info/RECORD"]
    assert shipped([importlib.metadata.PackagePath(p) for p in wheel], names) == ["data", "train"]
