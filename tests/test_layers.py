"""The layers point down: datasets <- models <- pipeline.record <- (pipeline | exports) <- exports.runtime <- orchestrators.

Every ``import`` in the project's source (module level or inside a function, relative or absolute) is read with
``ast`` and checked against the layer of the module that holds it:

- a module may import its own package and the layers below it, never one above;
- ``pipeline.record`` (the typed experiment config and the run record) sits below training (``pipeline``) and
  export (``exports``), which sit side by side: export reads finished runs through the record and never imports
  the training loop, and training never imports export;
- ``exports.runtime`` (the rig) takes from the project only the pure signal and metadata modules, and from
  outside only the light libraries the rig installs;
- ``pipeline.cli``, ``pipeline.demo``, ``pipeline.calibrate`` and ``pipeline.rehearse`` orchestrate every layer and
  may import anything.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datasets", "models", "pipeline", "exports")
#: what the rig's runtime may take from the rest of the project
RUNTIME_PROJECT = {"datasets", "datasets.dsp", "datasets.channel_names", "datasets.lsl_quiet", "datasets.atomic", "exports",
                   "exports.metadata", "exports.units"}
#: the pure helpers those modules stand on (the metadata's typed schema): light too, never imported by the runtime
RUNTIME_SUPPORT = {"datasets.typed", "datasets.data_info"}
LIGHT = RUNTIME_PROJECT | RUNTIME_SUPPORT
RUNTIME_THIRD_PARTY = {"numpy", "scipy", "onnx", "onnxruntime", "pylsl", "serial", "yaml", "starlette", "uvicorn", "edfio",
                       "matplotlib"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: each layer's rank by the package (or module) that holds it; a module belongs to the longest prefix that names it.
#: Training and export share a rank: they sit side by side on the run record and neither imports the other.
LAYERS = {"datasets": 0, "models": 1, "pipeline.record": 2, "pipeline": 3, "exports": 3, "exports.runtime": 4,
          "orchestrators": 5}
RUNTIME = LAYERS["exports.runtime"]
#: the modules on top, which put every layer together
ORCHESTRATORS = {"pipeline.cli", "pipeline.demo", "pipeline.calibrate", "pipeline.rehearse"}


def home(module: str) -> str:
    """The entry of LAYERS that holds a module."""
    parts = module.split(".")
    if any(".".join(parts[:n]) in ORCHESTRATORS for n in range(1, len(parts) + 1)):
        return "orchestrators"
    return next(".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in LAYERS)


def layer(module: str) -> int:
    return LAYERS[home(module)]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a source file."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from pkg import sub" imports the submodule when there is one
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or (ROOT / Path(*sub.split("."))).is_dir()
                out.append((node.lineno, sub if is_module else target))
    return out


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def is_project(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def violations_of(path: Path) -> list[str]:
    module = module_name(path)
    found = []
    for line, target in imports(path):
        where = f"{path.relative_to(ROOT)}:{line} imports {target}"
        top = target.split(".")[0]
        if layer(module) == RUNTIME:
            if is_project(target) and not (target in RUNTIME_PROJECT or layer(target) == RUNTIME):
                found.append(f"{where}: the runtime may use only {sorted(RUNTIME_PROJECT - {'datasets', 'exports'})}")
            elif not is_project(target) and top not in sys.stdlib_module_names and top not in RUNTIME_THIRD_PARTY | {"__future__"}:
                found.append(f"{where}: the rig installs only {sorted(RUNTIME_THIRD_PARTY)}")
            continue
        if not is_project(target):
            continue
        if layer(target) > layer(module):
            found.append(f"{where}: points up (layer {layer(module)} -> {layer(target)})")
        elif layer(target) == layer(module) and home(target) != home(module):
            found.append(f"{where}: {home(module)} and {home(target)} sit side by side and neither imports the other")
        elif module in LIGHT and target not in LIGHT:
            found.append(f"{where}: the runtime depends on this module, which must stay light")
    for line, target in imports(path):
        if module in LIGHT and not is_project(target):
            top = target.split(".")[0]
            if top not in sys.stdlib_module_names and top not in RUNTIME_THIRD_PARTY | {"__future__"}:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {target}: the runtime depends on this module")
    return found


def test_every_import_points_down():
    found = [v for path in sources() for v in violations_of(path)]
    assert not found, "imports against the layers:\n" + "\n".join(found)


@pytest.mark.parametrize("source, code, expected", [
    ("datasets/x.py", "import pipeline.train\n", "points up"),
    ("models/x.py", "from exports.onnx import export_run\n", "points up"),
    ("exports/x.py", "from pipeline.train import run_training\n", "side by side"),
    ("exports/x.py", "def f():\n    from pipeline import evaluate\n", "side by side"),
    ("pipeline/x.py", "from exports.onnx import export_run\n", "side by side"),
    ("exports/runtime/x.py", "import torch\n", "the rig installs only"),
    ("exports/runtime/x.py", "from datasets.epochs import load_epochs\n", "the runtime may use only"),
    ("exports/runtime/x.py", "from ..onnx import read_model_metadata\n", "the runtime may use only"),
    ("pipeline/record/run.py", "from ..train import run_training\n", "points up"),
    ("datasets/dsp.py", "import mne\n", "the runtime depends on this module"),
    ("datasets/typed.py", "from .epochs import load_epochs\n", "the runtime depends on this module"),
])
def test_the_check_catches_an_import_against_the_layers(tmp_path, monkeypatch, source, code, expected):
    """Each rule fails on a file that breaks it (written into a copy of the package layout)."""
    for folder in (*PACKAGES, "exports/runtime", "pipeline/record"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    for name in ("pipeline/train.py", "pipeline/evaluate.py", "exports/onnx.py", "datasets/epochs.py"):
        (tmp_path / name).write_text("")
    (tmp_path / source).write_text(code)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations_of(tmp_path / source)
    assert len(found) == 1 and expected in found[0], found


def test_export_and_the_run_record_load_no_training_loop():
    """At run time too: importing the exporter (and reading a run through the record) loads no training code."""
    code = ("import sys, exports.onnx, exports.cli, pipeline.record.run; "
            "bad = [m for m in ('pipeline.train', 'pipeline.task', 'pipeline.tracking', 'pytorch_lightning') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def renames_in(path: Path) -> list[str]:
    """Calls that move a file into place: ``os.replace``, ``os.rename``, ``shutil.move``, ``<path>.replace(target)``,
    ``<path>.rename(target)`` (one argument: ``str.replace`` takes two)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        named = (owner, node.func.attr) in {("os", "replace"), ("os", "rename"), ("shutil", "move")}
        path_method = node.func.attr in ("replace", "rename") and len(node.args) == 1 and not node.keywords
        if named or (path_method and owner not in ("os", "shutil")):
            found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno} {ast.unparse(node)}")
    return found


def test_one_atomic_write():
    """Every file (and folder) moved into place goes through datasets/atomic.py, the one helper that removes its
    temporary on an error; nothing else in the project renames files."""
    files = [p for p in sources() + sorted((ROOT / "scripts").glob("*.py")) if p != ROOT / "datasets" / "atomic.py"]
    found = [hit for path in files for hit in renames_in(path)]
    assert not found, "write through datasets.atomic instead:\n" + "\n".join(found)


def test_the_atomic_write_check_catches_a_rename(tmp_path):
    bad = tmp_path / "x.py"
    for code in ("import os\nos.replace(a, b)\n", "tmp.replace(path)\n", "p.rename(q)\n", "import shutil\nshutil.move(a, b)\n"):
        bad.write_text(code)
        assert renames_in(bad), code
    bad.write_text("name = text.replace('a', 'b')\n")
    assert not renames_in(bad)


def import_graph() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports (at module level or inside a function)."""
    modules = {module_name(p): p for p in sources()}
    graph = {}
    for module, path in modules.items():
        targets = {t for _, t in imports(path) if is_project(t)}
        # "from pkg.mod import name" may name an attribute: the module is the longest prefix that exists
        graph[module] = {next((".".join(t.split(".")[:n]) for n in range(len(t.split(".")), 0, -1)
                               if ".".join(t.split(".")[:n]) in modules), t) for t in targets} - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    """No two modules import each other, directly or through others (a function-level import counts too)."""
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
