"""The layers of ARCHITECTURE.md, checked on the static import graph of ``sldpack``.

The graph is built with ``ast`` from every module's source: module-level imports, imports inside functions
and ``TYPE_CHECKING`` blocks, ``from x import y`` where ``y`` is a module. Asserted: no import cycle, no
import of another module's ``_private`` name, and the layer rules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sldpack"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = _modules()


def _resolve_relative(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(mod: str, path: Path) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = node.module
            if node.level:
                target = _resolve_relative(mod, path.name == "__init__.py", node.level, node.module)
            assert target is not None
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES:  # `from pkg import module`
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, a.name, node.lineno))
    return out


def _owner(name: str) -> str | None:
    """The sldpack module ``name`` is (or lies in), or None for a third-party module."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, _, _ in _imports(mod, path):
            owner = _owner(target)
            # `import sldpack.a.b` also runs sldpack/__init__ and sldpack/a/__init__; the edge that matters for
            # cycles is the one to the module named
            if owner is not None and owner != mod and target.startswith("sldpack"):
                g[mod].add(owner)
    return g


def _find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


# Package __init__ modules re-export their package (``sldpack`` -> format.container, ``sldpack.init`` ->
# its backends): an edge *into* a package's own __init__ from inside it is a re-export, not a layer
# dependency, so cycle search ignores edges to a package __init__ from its own sub-modules.
def _without_reexports(g: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for n, deps in g.items():
        out[n] = {m for m in deps if not (MODULES[m].name == "__init__.py" and n.startswith(m + "."))}
    return out


def test_graph_sees_function_level_imports() -> None:
    # the check must see an import inside a function (cmd modules import torch-heavy code lazily)
    g = _graph()
    assert "sldpack.nn.distill" in g["sldpack.cli.cmd_distill"]
    assert len(MODULES) > 40


def test_no_import_cycle() -> None:
    cycle = _find_cycle(_without_reexports(_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_cross_module_private_import() -> None:
    bad = []
    for mod, path in MODULES.items():
        for target, name, line in _imports(mod, path):
            if not target.startswith("sldpack"):
                continue
            leaf = target.rsplit(".", 1)[-1]
            private_module = leaf.startswith("_") and not leaf.startswith("__")
            private_name = name is not None and name.startswith("_") and not name.startswith("__")
            # a package may use its own private modules (sldpack.init._kernels is the C kernel of sldpack.init,
            # sldpack.nn.archs._common the shared layers of the zoo)
            pkg = target.rsplit(".", 1)[0]
            own_package = pkg.startswith(mod.rsplit(".", 1)[0]) or target.startswith(mod + ".")
            if (private_name or (private_module and not own_package)) and _owner(target) != mod:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {target}" + (f".{name}" if name else ""))
    assert not bad, "imports of another module's private names:\n" + "\n".join(bad)


# layer -> module prefixes it must never import (ARCHITECTURE.md, "Layers")
_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "sldpack.errors": ("torch", "sldpack.format", "sldpack.init", "sldpack.nn", "sldpack.medical",
                       "sldpack.pipelines", "sldpack.cli"),
    "sldpack.atomic": ("torch", "sldpack.format", "sldpack.init", "sldpack.nn", "sldpack.medical",
                       "sldpack.pipelines", "sldpack.cli"),
    "sldpack.budget": ("torch", "sldpack.format", "sldpack.init", "sldpack.nn", "sldpack.medical",
                       "sldpack.pipelines", "sldpack.cli"),
    "sldpack.format": ("torch", "sldpack.nn", "sldpack.medical", "sldpack.pipelines", "sldpack.cli"),
    "sldpack.init": ("torch", "sldpack.nn", "sldpack.medical", "sldpack.pipelines", "sldpack.cli"),
    "sldpack.medical": ("torch", "sldpack.nn", "sldpack.pipelines", "sldpack.cli"),
    "sldpack.nn": ("sldpack.pipelines", "sldpack.cli"),
    "sldpack.pipelines": ("sldpack.cli",),
}

# the error codes' descriptions are format constants (a leaf module, no imports of its own)
_ALLOWED_EDGES = {("sldpack.errors", "sldpack.format.constants")}


@pytest.mark.parametrize("layer", sorted(_FORBIDDEN))
def test_layer_rules(layer: str) -> None:
    bad = []
    for mod, path in MODULES.items():
        if not (mod == layer or mod.startswith(layer + ".")):
            continue
        for target, _, line in _imports(mod, path):
            for forbidden in _FORBIDDEN[layer]:
                if (target == forbidden or target.startswith(forbidden + ".")) and (mod, target) not in _ALLOWED_EDGES:
                    bad.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert not bad, f"{layer} breaks its layer rule:\n" + "\n".join(bad)


def test_one_safetensors_codec() -> None:
    """Only format/safetensors_codec.py parses a safetensors header (json.loads of the bytes after the
    8-byte length) or writes one; everything else calls it."""
    header_parse = re.compile(r"json\.loads\([^)]*\[\s*8\s*:")
    length_prefix = re.compile(r"int\.from_bytes\([^)]*\[\s*:\s*8\s*\]")
    bad = []
    for mod, path in MODULES.items():
        if mod == "sldpack.format.safetensors_codec":
            continue
        text = path.read_text(encoding="utf-8")
        for rx in (header_parse, length_prefix):
            for m in rx.finditer(text):
                bad.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}")
    assert not bad, "hand-written safetensors header code outside the codec:\n" + "\n".join(bad)


def test_one_dtype_table() -> None:
    """``"F32": "<f4"``-style maps exist once, in format/constants.py."""
    rx = re.compile(r"""["']F32["']\s*:\s*(np\.|["']<f4|["']float32)|["']float32["']\s*:\s*["']F32""")
    bad = [str(p.relative_to(ROOT)) for m, p in MODULES.items()
           if m != "sldpack.format.constants" and rx.search(p.read_text(encoding="utf-8"))]
    assert not bad, f"dtype tables outside sldpack/format/constants.py: {bad}"


MAX_MODULE_LINES = 700


def test_no_module_over_700_lines() -> None:
    """One concern per module, and none longer than 700 lines (split by concern, not by size)."""
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _role_rules(tree: ast.AST) -> list[str]:
    """Functions that derive a tensor role from a name prefix: a ``startswith("bn.")``/``("theta0.")`` test
    next to the role it implies (``"bn_stats"``/``"theta0_check"``)."""
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        tested = {a.value for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                  and c.func.attr == "startswith" for a in c.args if isinstance(a, ast.Constant)}
        consts = {c.value for c in ast.walk(fn) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        if ("bn." in tested and "bn_stats" in consts) or ("theta0." in tested and "theta0_check" in consts):
            out.append(fn.name)
    return out


def test_role_rule_detector_finds_a_copy() -> None:
    copy = ('def _role_for(name):\n    if name in ("images", "labels", "lrs"):\n        return name\n'
            '    return "bn_stats" if name.startswith("bn.") else "extra"\n')
    assert _role_rules(ast.parse(copy)) == ["_role_for"]


def test_role_for_name_defined_once() -> None:
    """The name -> role rule of spec 6.2 is ``format/constants.py:role_for_name``, and nothing re-derives it."""
    defs, copies = [], []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        defs += [mod for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "role_for_name"]
        if mod != "sldpack.format.constants":
            copies += [f"{path.relative_to(ROOT)}: {name}" for name in _role_rules(tree)]
    assert defs == ["sldpack.format.constants"], defs
    assert not copies, "tensor-role rules outside format/constants.py:\n" + "\n".join(copies)


def test_engine_errors_name_fields_not_flags() -> None:
    """``sldpack/nn`` raises errors naming settings by field (``inner_lr``); only ``cli/`` spells options
    (``--inner-lr``) or commands (``sldp distill``)."""
    flag = re.compile(r"(^|[\s(`'\"])--[a-z]|\bsldp [a-z]")
    bad = []
    for mod, path in MODULES.items():
        if not mod.startswith("sldpack.nn."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for c in ast.walk(node.exc):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and flag.search(c.value):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {c.value!r}")
    assert not bad, "engine errors naming command-line flags:\n" + "\n".join(bad)


def _calls_of(tree: ast.AST, names: set[str]) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in names:
                out.append((name, node.lineno))
    return out


def test_one_folder_item_reader() -> None:
    """A folder item (image + mask: decode, shape check, binarise, resize) is read only by
    medical/folders.py ``FolderReader``, for the eager and the lazy loader alike: no second reader that
    could apply another rule (the lazy one used to resize a mask of another shape than its image)."""
    bad = []
    for mod, path in MODULES.items():
        if mod in ("sldpack.medical.folders", "sldpack.medical.images"):  # the reader; the per-file primitives
            continue
        for name, line in _calls_of(ast.parse(path.read_text(encoding="utf-8")), {"binary_mask", "resize_u8"}):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {name}()")
    assert not bad, "folder items decoded outside medical/folders.py FolderReader:\n" + "\n".join(bad)
    tree = ast.parse(MODULES["sldpack.medical.store"].read_text(encoding="utf-8"))
    assert _calls_of(tree, {"FolderReader"}), "the lazy folder does not read through FolderReader"
    tree = ast.parse(MODULES["sldpack.medical.loaders"].read_text(encoding="utf-8"))
    assert _calls_of(tree, {"FolderReader"}), "the eager folder loader does not read through FolderReader"


# each default: (its one definition: module, constant name), the settings it is the default of, its value
_DEFAULTS: dict[str, tuple[str, frozenset[str], float]] = {
    "DEFAULT_DELTA": ("sldpack.medical.detection", frozenset({"delta"}), 0.4),
    "DEFAULT_VAL_FRACTION": ("sldpack.pipelines.selection", frozenset({"val_fraction"}), 0.2),
    "DEFAULT_OUTSIDE_MAX": ("sldpack.medical.patches", frozenset({"outside_max"}), 0.01),
    "DEFAULT_INSIDE_MIN": ("sldpack.medical.patches", frozenset({"inside_min"}), 0.85),
}


def _number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _setting_literals(tree: ast.AST) -> list[tuple[str, float, int]]:
    """``(setting name, number, line)`` wherever a number literal is given to a named setting: a parameter
    default, a dataclass field (``x: float = 0.4``, ``field(default=0.4)``), a ``name = 0.4`` constant, a
    ``{"x": 0.4}`` entry, ``.get("x", 0.4)``/``.pop``/``.setdefault``, a keyword ``x=0.4`` and a click option
    ``option("--x", default=0.4)``."""
    out: list[tuple[str, float, int]] = []

    def add(name: str, value: ast.AST | None, line: int) -> None:
        v = _number(value)
        if v is not None:
            out.append((name.lower(), v, line))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            pos = [*a.posonlyargs, *a.args]
            for arg, d in zip(pos[len(pos) - len(a.defaults):], a.defaults, strict=True):
                add(arg.arg, d, d.lineno)
            for arg, kd in zip(a.kwonlyargs, a.kw_defaults, strict=True):
                if kd is not None:
                    add(arg.arg, kd, kd.lineno)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            add(node.target.id, node.value, node.lineno)
            if isinstance(node.value, ast.Call):
                for kw in node.value.keywords:
                    if kw.arg == "default":
                        add(node.target.id, kw.value, node.lineno)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    add(t.id, node.value, node.lineno)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    add(k.value, v, v.lineno)
        elif isinstance(node, ast.Call):
            f = node.func
            key = node.args[0] if node.args else None
            if (isinstance(f, ast.Attribute) and f.attr in ("get", "pop", "setdefault") and len(node.args) == 2
                    and isinstance(key, ast.Constant) and isinstance(key.value, str)):
                add(key.value, node.args[1], node.lineno)
            for kw in node.keywords:
                if kw.arg is None:
                    continue
                if kw.arg == "default" and isinstance(key, ast.Constant) and isinstance(key.value, str) \
                        and key.value.startswith("--"):
                    add(key.value[2:].replace("-", "_"), kw.value, node.lineno)
                else:
                    add(kw.arg, kw.value, node.lineno)
    return out


def _retyped_defaults(mod: str, tree: ast.AST) -> list[str]:
    bad = []
    for name, value, line in _setting_literals(tree):
        for const, (owner, settings, default) in _DEFAULTS.items():
            if mod == owner and name == const.lower():
                continue  # the one definition
            stem = name.removeprefix("default_").removesuffix("_default")
            if (stem in settings or name == const.lower()) and value == default:
                bad.append(f"line {line}: {name} = {value:g} (use {owner}.{const})")
    return bad


def test_each_default_is_defined_once() -> None:
    """DEFAULT_DELTA, DEFAULT_VAL_FRACTION and the patch thresholds are each assigned once, in their module,
    and never typed out again as the literal default of the setting they name (a parameter, a field, a
    click option, a settings dict)."""
    defined: dict[str, list[str]] = {c: [] for c in _DEFAULTS}
    bad = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id in defined:
                    defined[t.id].append(mod)
        bad += [f"{path.relative_to(ROOT)}: {b}" for b in _retyped_defaults(mod, tree)]
    for const, (owner, _, _) in _DEFAULTS.items():
        assert defined[const] == [owner], f"{const} is assigned in {defined[const]}, not once in {owner}"
    assert not bad, "defaults typed out again instead of imported:\n" + "\n".join(bad)


def test_retyped_default_check_catches_each_form() -> None:
    code = '''
def f(x, delta=0.4, *, val_fraction: float = 0.2): ...
class C:
    outside_max: float = 0.01
    inside_min: float = field(default=0.85)
opts = {"delta": 0.4}
v = options.get("outside_max", 0.01)
click.option("--val-fraction", type=float, default=0.2)
g(inside_min=0.85)
default_delta = 0.4
'''
    assert len(_retyped_defaults("sldpack.x", ast.parse(code))) == 9
    unrelated = '''
def f(lr=0.4, delta=0.5, momentum=0.85): ...
t = {"ema": 0.2, "threshold": 0.01}
'''
    assert _retyped_defaults("sldpack.x", ast.parse(unrelated)) == []
