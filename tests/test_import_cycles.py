"""No import cycle between any two modules of the product, imports inside functions included.

import-linter's contracts (pyproject.toml, run by CI as `lint-imports`) check the layers and cycles
between the parts of each package; this test also catches a cycle through a package's own __init__
(a blueprint importing from web/__init__.py while web/__init__.py imports the blueprint), which
those contracts do not look at. grimp is import-linter's graph library.
"""
from __future__ import annotations

import grimp

PACKAGES = ("cli", "web", "gateway", "storage", "config", "templates")


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so that a long import chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(groups)


def cycle_path(graph: grimp.ImportGraph, group: list[str]) -> str:
    """One concrete loop through a group, as `a -> b -> a`."""
    first = group[0]
    members = set(group)
    # Breadth-first from the first module back to itself, inside the group.
    previous: dict[str, str] = {}
    queue = [first]
    while queue:
        module = queue.pop(0)
        for child in sorted(graph.find_modules_directly_imported_by(module) & members):
            if child == first:
                path = [first]
                step = module
                while step != first:
                    path.append(step)
                    step = previous[step]
                path.append(first)
                path.reverse()
                return " -> ".join(path)
            if child not in previous:
                previous[child] = module
                queue.append(child)
    return ", ".join(group)


def build_graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def test_no_module_imports_itself_through_others() -> None:
    graph = build_graph()
    cycles = [cycle_path(graph, group) for group in module_cycles(graph)]
    assert not cycles, "import cycles between modules:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The checker itself must be able to fail: a graph with a loop through a package's __init__.
    graph = grimp.ImportGraph()
    for module in ("web", "web.app", "web.team", "web.forms"):
        graph.add_module(module)
    graph.add_import(importer="web", imported="web.team")
    graph.add_import(importer="web.team", imported="web")
    graph.add_import(importer="web.team", imported="web.forms")
    assert module_cycles(graph) == [["web", "web.team"]]
    assert cycle_path(graph, ["web", "web.team"]) == "web -> web.team -> web"


def test_every_package_ships_in_the_wheel() -> None:
    # pyproject.toml lists the packages by name: a new sub-package missing there is left out of the wheel
    # (a release install then fails to import it), though an editable install still works.
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(root)).replace("/", ".")
             for top in ("cli", "config", "storage", "gateway", "web", "templates")
             for p in (root / top).rglob("__init__.py")}
    assert found == listed
