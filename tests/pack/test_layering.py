"""The packages import one way (issue 19): core below everything, media on core, money and transport on core
(transport may use media, money may not; neither uses the other), jobs on all of those, editor and nodes on
top. No two modules import each other, directly or round a circle. Every import counts, including the ones
inside functions, and every one is relative (ComfyUI has top-level `nodes` and `utils` modules of its own)."""

import ast

import pytest

from support import PACK_DIR

BELOW = {
    "core": set(),
    "media": {"core"},
    "money": {"core"},
    "transport": {"core", "media"},
    "jobs": {"core", "media", "money", "transport"},
    "editor": {"core", "media", "money", "transport", "jobs"},
    "nodes": {"core", "media", "money", "transport", "jobs"},
    "": {"core", "media", "money", "transport", "jobs", "editor", "nodes"},  # the pack's __init__.py
}


def pack_modules():
    """{dotted name: path} of every module of the pack ("" is the pack's own __init__.py)."""
    modules = {"": PACK_DIR / "__init__.py"}
    for package in BELOW:
        if package:
            for path in sorted((PACK_DIR / package).glob("*.py")):
                modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def imports(name, path, modules):
    """[(line, imported module's dotted name)] of every import in the file, wherever it stands."""
    here = name.split(".") if path.stem == "__init__" and name else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"absolute:{alias.name}") for alias in node.names
                      if alias.name.split(".")[0] in BELOW]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if (node.module or "").split(".")[0] in BELOW:
                    found.append((node.lineno, f"absolute:{node.module}"))
                continue
            base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                child = ".".join(base + [alias.name])
                found.append((node.lineno, child if child in modules else ".".join(base)))
    return found


def graph():
    modules = pack_modules()
    return {name: imports(name, path, modules) for name, path in modules.items()}


def package_of(module):
    return module.split(".")[0]


def test_the_layer_list_covers_every_package_of_the_pack():
    folders = {p.name for p in PACK_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(BELOW) - {""}
    assert not (PACK_DIR / "utils").exists()


def test_every_import_is_relative_and_goes_down_or_within_its_package():
    wrong = []
    for module, found in graph().items():
        for line, target in found:
            if target.startswith("absolute:"):
                wrong.append(f"{module or '__init__'}:{line} imports {target[9:]} by an absolute name")
            elif package_of(target) != package_of(module) and package_of(target) not in BELOW[package_of(module)]:
                wrong.append(f"{module or '__init__'}:{line} imports {target}")
    assert wrong == []


def cycles(edges):
    """The strongly connected components of more than one module (Tarjan), and modules importing themselves."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle():
    # A package's __init__.py is where its modules are listed (nodes/__init__.py imports every node file),
    # not a module they use: an import of the package itself is not an edge.
    modules = pack_modules()
    edges = {module: {target for _, target in found if target in modules and target != package_of(target)}
             for module, found in graph().items()}
    assert cycles(edges) == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"a"}}, [["a"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(edges, expected):
    assert cycles(edges) == expected


def test_the_import_reader_sees_deferred_relative_and_absolute_imports(tmp_path):
    module = tmp_path / "spend.py"
    module.write_text("from ..core import comfy\n\ndef f():\n    from ..money.ledger import book\n"
                      "    from . import job\n    import nodes\n")
    modules = {"core.comfy": None, "money.ledger": None, "jobs.job": None}
    assert imports("jobs.spend", module, modules) == [
        (1, "core.comfy"), (4, "money.ledger"), (5, "jobs.job"), (6, "absolute:nodes")]
