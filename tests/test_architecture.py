"""The package's shape: every import points down a fixed order of subsystems (no package imports a
package above it, so there are no cycles between them), modules stay small, imports sit at the top
of their module unless the dependency is optional, and no code stores caches in another object's
``__dict__``. Read from the source with ``ast``; nothing is imported."""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyfaid")

#: Subsystems from the bottom up: a package may import its own modules and any package on a lower
#: line, never one on its own line or above (entry points are siblings: they share lower modules).
LAYERS = [
    ["pyfaid._C"],
    ["pyfaid", "pyfaid._ext", "pyfaid.fileio", "pyfaid.config", "pyfaid.distributed"],
    ["pyfaid.render", "pyfaid.graph"],
    ["pyfaid.facemodel"],
    ["pyfaid.occlusion"],
    ["pyfaid.encoders"],
    ["pyfaid.synth"],
    ["pyfaid.data"],
    ["pyfaid.losses", "pyfaid.metrics"],
    ["pyfaid.models"],
    ["pyfaid.checkpoint"],
    ["pyfaid.reconstruct"],
    ["pyfaid.evaluate"],
    ["pyfaid.trainer", "pyfaid.train_attributes"],
    ["pyfaid.train"],
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}

#: Third-party modules that are optional at run time: imported where used, with a clear error.
OPTIONAL = ("dlib", "facenet_pytorch", "face_recognition_models", "moderngl", "torch_geometric", "pygltflib",
            "matplotlib", "importlib")


def _modules():
    for dp, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(dp, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                yield path, rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _subsystem(module: str) -> str:
    parts = module.split(".")
    for n in (2, 1):
        name = ".".join(parts[:n])
        if name in LEVEL:
            return name
    raise AssertionError(f"{module} belongs to no subsystem of tests/test_architecture.py's LAYERS")


def _imports(path: str, module: str):
    """``(target module, line, inside a function)`` of every pyfaid import of a file."""
    tree = ast.parse(open(path).read())
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno, id(node) in inner
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [base + "." + a.name for a in node.names] if base == "pyfaid" else [base]
            for name in names:
                yield name, node.lineno, id(node) in inner


MODULES = list(_modules())


@pytest.mark.parametrize("path,module", MODULES, ids=[m for _, m in MODULES])
def test_imports_point_down(path, module):
    here = _subsystem(module)
    for target, line, _ in _imports(path, module):
        if not target.startswith("pyfaid"):
            continue
        there = _subsystem(target)
        if there == here:
            continue
        assert LEVEL[there] < LEVEL[here], f"{module}:{line} imports {target}: {there} is not below {here}"


@pytest.mark.parametrize("path,module", MODULES, ids=[m for _, m in MODULES])
def test_imports_at_the_top_unless_optional(path, module):
    for target, line, inside in _imports(path, module):
        if inside and not any(target == o or target.startswith(o + ".") for o in OPTIONAL):
            pytest.fail(f"{module}:{line} imports {target} inside a function (not an optional dependency)")


@pytest.mark.parametrize("path,module", MODULES, ids=[m for _, m in MODULES])
def test_small_modules_and_functions_no_dict_caches(path, module):
    src = open(path).read()
    assert src.count("\n") <= 500, f"{module} has {src.count(chr(10))} lines (at most 500)"
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{module}:{node.lineno} {node.name} has {length} lines (at most 80)"
        if isinstance(node, ast.Attribute) and node.attr == "__dict__":
            pytest.fail(f"{module}:{node.lineno} reaches into an object's __dict__")


def test_every_source_folder_is_a_shipped_package():
    """``setup.py`` ships what ``find_packages`` finds: a folder of modules without ``__init__.py`` is
    left out of the wheel (it imports from the source tree, then fails once installed), and no folder
    may match a ``.gitignore`` rule such as ``build/``."""
    ignored = ("build", "dist", "runs", "__pycache__")
    for dp, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(dp, os.path.dirname(ROOT))
        if any(f.endswith(".py") for f in files):
            assert "__init__.py" in files, f"{rel} holds modules but no __init__.py: it would not be installed"
        assert os.path.basename(dp) not in ignored, f"{rel} is a name .gitignore ignores"
