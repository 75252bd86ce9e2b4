"""The house rules of the code's layout, checked by walking every import (including those inside
functions):

- no import cycle between the top-level packages and modules of pymaster (api, store, registry,
  scheduler, controllers, server, cli, client, app, main, metrics);
- pykubelet imports nothing of pymaster but ``pymaster.api`` and ``pymaster.client``;
- docker-py is imported only under ``pykubelet/runtime/docker/`` (tests and benchmarks use it to
  check and to measure against);
- no source file is over 600 lines (generated code aside).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def source_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" not in path.name:
                yield path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            # "from pymaster import app" imports pymaster.app
            yield from (f"{module}.{alias.name}" for alias in node.names)


def unit_of(module: str) -> str | None:
    """The top-level unit of pymaster a module belongs to ("pymaster.registry"), else None."""
    parts = module.split(".")
    if parts[0] != "pymaster" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_cycles_between_pymaster_packages() -> None:
    files = list(source_files("pymaster"))
    units = {unit for path in files if (unit := unit_of(module_name(path)))}
    graph: dict[str, set[str]] = {}
    for path in files:
        unit = unit_of(module_name(path))
        for imported in imports(path):
            target = unit_of(imported)
            if unit and target in units and target != unit:
                graph.setdefault(unit, set()).add(target)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_the_agent_uses_only_the_api_and_the_client_of_the_master() -> None:
    allowed = ("pymaster.api", "pymaster.client")
    bad = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for path in source_files("pykubelet")
        for imported in imports(path)
        if imported.split(".")[0] == "pymaster" and imported != "pymaster"
        and not imported.startswith(allowed)
    ]
    assert bad == []


def test_docker_py_only_in_the_docker_runtime() -> None:
    runtime = ROOT / "pykubelet" / "runtime" / "docker"
    bad = [
        f"{path.relative_to(ROOT)} imports {imported}"
        for path in source_files("pymaster", "pykubelet", "scripts")
        for imported in imports(path)
        if imported.split(".")[0] == "docker" and runtime not in path.parents
    ]
    assert bad == []


@pytest.mark.parametrize("package", ["pymaster", "pykubelet", "tests", "bench", "scripts"])
def test_no_source_file_over_600_lines(package: str) -> None:
    long = [
        f"{path.relative_to(ROOT)}: {count} lines"
        for path in source_files(package)
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []


def test_the_rules_catch_what_they_are_for() -> None:
    """The checks themselves can fail: a cycle is found, units are told apart."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert unit_of("pymaster.registry.pods") == "pymaster.registry"
    assert unit_of("pykubelet.sync") is None
