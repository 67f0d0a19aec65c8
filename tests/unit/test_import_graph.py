"""The shape of the code, read from its import graph (issue 13).

The graph is built from the source with ``ast``, every import counted wherever it is
written: at module level, inside a function, under ``if TYPE_CHECKING``, and
``importlib.import_module("…")`` with a literal name. The launcher's registration tables
(``services/registry.py``: ``PROVIDERS``, ``TARGET_TYPES``, ``SOURCES``,
``SOURCE_TYPES``) count as imports of
the packages they name. ``from a.b import c`` counts as an import of ``a.b`` and, when
``a.b.c`` is a module, of that module too: whichever way a reader resolves it, the rules
below hold.

Rules:

- no import cycle anywhere in ``shared`` and ``services`` (no strongly connected component
  of more than one module, no module importing itself);
- services never import each other: a module of ``services/gateway``,
  ``services/scheduler``, ``services/providers/<name>`` or ``services/sinks/<type>`` imports
  no module of another of these, nor the launcher (the top-level ``services/*.py``, which
  may import them all);
- ``shared`` is four packages, imports flowing one way: ``shared.core`` ← ``shared.bus`` ←
  {``shared.relay``, ``shared.lookups``}; relay and lookups never import each other, and
  nothing in ``shared`` imports ``services``;
- no Python module over 800 lines;
- no text of ``shared/`` (code or comment) names an integration: a provider, a target type
  or a source (:data:`INTEGRATION_NAMES`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "services")
MAX_LINES = 800
SHARED_LAYERS = {
    "shared.core": set(),
    "shared.bus": {"shared.core"},
    "shared.relay": {"shared.core", "shared.bus"},
    "shared.lookups": {"shared.core", "shared.bus"},
}
"""What each package of ``shared`` may import (besides itself)."""
INTEGRATION_NAMES = re.compile(
    r"\b(virustotal|abuseipdb|whois|rdap|emailsec|spf|dmarc|slack|teams|discord|pagerduty"
    r"|twilio|sms|smtp|sqreen|email[ _-]target)\b",
    re.IGNORECASE,
)
LAUNCHER_TABLES = {
    "PROVIDERS": "services.providers",
    "TARGET_TYPES": "services.sinks",
    "SOURCES": "",
    "SOURCE_TYPES": "",
}
"""The launcher's tables of integrations, and the package their names are in ("": a table
of ``{name: module}``)."""


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: set[str] = field(default_factory=set)


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name, is_package = _module_name(path)
            found[name] = Module(name, path, is_package)
    return found


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _resolve(module: Module, level: int, target: str | None) -> str:
    """The absolute name of a relative import's ``from`` part."""
    if level == 0:
        return target or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _known(name: str, modules: dict[str, Module]) -> str | None:
    """``name``, or the longest prefix of it that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _imported(module: Module, tree: ast.AST, modules: dict[str, Module]) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.level, node.module)
            yield base
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    yield f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value
    if module.name == "services.registry":
        yield from _launcher_tables(tree)


def _launcher_tables(tree: ast.AST) -> Iterator[str]:
    """The packages the launcher's registration tables name (imported by name at run time)."""
    assert isinstance(tree, ast.Module)
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id in LAUNCHER_TABLES:
                assert node.value is not None
                table = ast.literal_eval(node.value)
                package = LAUNCHER_TABLES[target.id]
                if isinstance(table, dict):
                    yield from table.values()
                else:
                    yield from (f"{package}.{name}" for name in table)


def graph() -> dict[str, Module]:
    modules = _modules()
    for module in modules.values():
        tree = ast.parse(module.path.read_text("utf-8"), str(module.path))
        for name in _imported(module, tree, modules):
            if _ours(name) and (known := _known(name, modules)) is not None:
                module.imports.add(known)
    return modules


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return graph()


def _components(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(modules[root].imports)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for child in edges:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(modules[child].imports))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def _service_of(name: str) -> str | None:
    """The deployable service a module belongs to (``gateway``, ``scheduler``,
    ``providers.dns``, ``sinks.http``…), ``launcher`` for the top-level modules of
    ``services``, else None."""
    parts = name.split(".")
    if parts[0] != "services" or len(parts) == 1:
        return None
    if parts[1] in ("gateway", "scheduler"):
        return parts[1]
    if parts[1] in ("providers", "sinks"):
        return f"{parts[1]}.{parts[2]}" if len(parts) > 2 else None
    return "launcher"


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "shared" and len(parts) > 1 else None


def test_the_graph_sees_every_kind_of_import(modules: dict[str, Module]) -> None:
    """The reader itself: function-level imports and the launcher's tables are edges."""
    assert "services.gateway.app" in modules["services.registry"].imports  # in a function
    assert "services.providers.dns" in modules["services.registry"].imports  # a table entry
    assert "services.sinks.log" in modules["services.registry"].imports
    assert "services.gateway.sqreen" in modules["services.registry"].imports


def test_no_import_cycle(modules: dict[str, Module]) -> None:
    cycles = [c for c in _components(modules) if len(c) > 1]
    loops = sorted(name for name, m in modules.items() if name in m.imports)
    assert not cycles, f"import cycles: {cycles}"
    assert not loops, f"modules importing themselves: {loops}"


def test_services_never_import_each_other(modules: dict[str, Module]) -> None:
    wrong = []
    for name, module in modules.items():
        mine = _service_of(name)
        if mine in (None, "launcher"):
            continue
        for imported in module.imports:
            theirs = _service_of(imported)
            if theirs is not None and theirs != mine:
                wrong.append(f"{name} -> {imported}")
    assert not wrong, "a service imports another service or the launcher: " + ", ".join(
        sorted(wrong)
    )


def test_shared_is_four_packages_importing_one_way(modules: dict[str, Module]) -> None:
    flat = sorted(n for n in modules if n.startswith("shared.") and _layer(n) not in SHARED_LAYERS)
    assert not flat, f"modules of shared outside its four packages: {flat}"
    wrong = []
    for name, module in modules.items():
        layer = _layer(name)
        if layer is None:
            if name == "shared":
                assert not module.imports, "shared/__init__.py imports nothing"
            continue
        for imported in module.imports:
            if not imported.startswith("shared"):
                wrong.append(f"{name} -> {imported}")  # shared never imports services
                continue
            theirs = _layer(imported)
            if theirs not in (layer, None) and theirs not in SHARED_LAYERS[layer]:
                wrong.append(f"{name} -> {imported}")
    assert not wrong, "imports against the flow core <- bus <- {relay, lookups}: " + ", ".join(
        sorted(wrong)
    )


def test_no_module_over_800_lines(modules: dict[str, Module]) -> None:
    long = {
        str(m.path.relative_to(ROOT)): n
        for m in modules.values()
        if (n := len(m.path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_shared_names_no_integration() -> None:
    named = [
        f"{path.relative_to(ROOT)}:{number}: {match[0]}"
        for path in sorted((ROOT / "shared").rglob("*.py"))
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        for match in INTEGRATION_NAMES.finditer(line)
    ]
    assert not named, "shared/ names integrations:\n" + "\n".join(named)
