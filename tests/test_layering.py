"""The layering of notes' issue 14 (one core, sources as plugins), checked on the source text.

Every ``.py`` file under gateway/, adapters/, alerting/ and devkit/ is parsed with ``ast``;
every import counts: module level, inside functions, under ``if TYPE_CHECKING:``.

1. ``gateway/core`` imports nothing of the project outside ``gateway.core``.
2. ``adapters`` imports only ``gateway.core`` and ``adapters``; ``alerting`` only
   ``gateway.core`` and ``alerting``.
3. The runtime (gateway/, adapters/, alerting/) never imports ``devkit``, except
   gateway/cli.py inside a function (the ``simulate`` and ``demo`` commands).
4. gateway/ never names a source type: it reaches the source types only through
   ``adapters.registry`` (no other ``adapters`` module, no identifier that is a registered
   source model or spec class).
5. No import cycle between packages. Nodes: gateway.core, gateway.api, gateway.uplink,
   gateway.sinks, gateway.spool, gateway.grafana, each remaining module of gateway/
   (gateway.supervisor, gateway.config, ...), adapters (the registry) and adapters.<type>,
   alerting, alerting.notify, devkit; and, coarser, the top-level packages gateway.core /
   gateway (the application) / adapters / alerting / devkit. The sanctioned lazy
   gateway/cli.py -> devkit import is not an edge.

Each failure lists the offending imports as ``file:line: importer -> imported``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from adapters.registry import SOURCE_SPECS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "adapters", "alerting", "devkit")
RUNTIME = ("gateway", "adapters", "alerting")
CLI = "gateway.cli"


@dataclass(frozen=True)
class Import:
    importer: str  # module name of the importing file
    path: Path
    line: int
    target: str  # the project module imported (resolved: relative, ``from pkg import module``)
    in_function: bool

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.importer} -> {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _is_project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, path: Path) -> None:
        self.module = module
        self.path = path
        self.package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        self.depth = 0
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        if _is_project(target):
            self.found.append(Import(self.module, self.path, node.lineno, target, self.depth > 0))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join([*base, node.module] if node.module else base)
        else:
            origin = node.module or ""
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            self._add(node, sub if sub in modules() else origin)


@cache
def imports() -> tuple[Import, ...]:
    out: list[Import] = []
    for name, path in modules().items():
        c = _Collector(name, path)
        c.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        out.extend(c.found)
    return tuple(out)


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _report(what: str, bad: Iterable[Import]) -> str:
    lines = sorted(str(i) for i in bad)
    return f"{what} ({len(lines)}):\n" + "\n".join(f"  {ln}" for ln in lines)


def test_the_walk_sees_the_project() -> None:
    expected = {"gateway.cli", "gateway.core.config", "adapters.registry", "alerting", "devkit.simulator.plant"}
    assert expected <= modules().keys()
    # a function-level import is seen as one (the lazy devkit import of the simulate command)
    assert any(i.importer == CLI and i.target.startswith("devkit") and i.in_function for i in imports())
    # and a TYPE_CHECKING import as well (devkit/simulator/__init__.py types the frame that way)
    assert any(i.importer == "devkit.simulator" and i.target == "devkit.simulator.plant" for i in imports())


def test_core_imports_only_core() -> None:
    bad = [i for i in imports() if _within(i.importer, "gateway.core") and not _within(i.target, "gateway.core")]
    assert not bad, _report("gateway/core imports outside gateway.core", bad)


def test_adapters_import_only_core_and_adapters() -> None:
    bad = [i for i in imports()
           if _within(i.importer, "adapters") and not _within(i.target, "gateway.core", "adapters")]
    assert not bad, _report("adapters/ imports outside gateway.core and adapters", bad)


def test_alerting_imports_only_core_and_alerting() -> None:
    bad = [i for i in imports()
           if _within(i.importer, "alerting") and not _within(i.target, "gateway.core", "alerting")]
    assert not bad, _report("alerting/ imports outside gateway.core and alerting", bad)


def _sanctioned_devkit_import(i: Import) -> bool:
    return i.importer == CLI and i.in_function and _within(i.target, "devkit")


def test_runtime_never_imports_devkit() -> None:
    bad = [i for i in imports()
           if _within(i.importer, *RUNTIME) and _within(i.target, "devkit") and not _sanctioned_devkit_import(i)]
    assert not bad, _report("runtime modules importing devkit (only gateway/cli.py, inside a function, may)", bad)


def _source_type_names() -> set[str]:
    names = {type(spec).__name__ for spec in SOURCE_SPECS}
    names |= {m.__name__ for spec in SOURCE_SPECS for m in spec.models}
    return names


def _identifiers(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.lineno, node.name
        elif isinstance(node, ast.alias):
            yield getattr(node, "lineno", 0), node.asname or node.name.rpartition(".")[2]


def test_gateway_never_names_a_source_type() -> None:
    bad_imports = [i for i in imports()
                   if _within(i.importer, "gateway") and _within(i.target, "adapters")
                   and i.target != "adapters.registry"]
    assert not bad_imports, _report("gateway/ importing adapters other than adapters.registry", bad_imports)
    names = _source_type_names()
    assert {"MqttSource", "ModbusTcpSource"} <= names  # the check knows what to look for
    named = [
        f"{path.relative_to(ROOT)}:{line}: {ident}"
        for mod, path in modules().items() if _within(mod, "gateway")
        for line, ident in _identifiers(ast.parse(path.read_text(encoding="utf-8")))
        if ident in names
    ]
    assert not named, "gateway/ naming a source type's model or spec:\n" + "\n".join(sorted(set(named)))


def node_of(module: str) -> str:
    parts = module.split(".")
    top = parts[0]
    if top == "gateway":
        return ".".join(parts[:2])  # a subpackage, or one of the application's own modules
    if top == "adapters":
        if len(parts) > 1 and (ROOT / "adapters" / parts[1]).is_dir():
            return f"adapters.{parts[1]}"
        return "adapters"
    if top == "alerting":
        return "alerting.notify" if len(parts) > 1 and parts[1] == "notify" else "alerting"
    return top


def top_of(module: str) -> str:
    node = node_of(module)
    return node if node == "gateway.core" else node.split(".")[0]


def _cycles(key: Callable[[str], str]) -> tuple[list[list[str]], dict[tuple[str, str], list[Import]]]:
    """Strongly connected components with more than one node (Tarjan) of the graph whose
    nodes are ``key(module)``, and the imports behind each edge."""
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for i in imports():
        if _sanctioned_devkit_import(i):
            continue
        a, b = key(i.importer), key(i.target)
        if a != b:
            edges[(a, b)].append(i)
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs, edges


def _cycle_report(sccs: list[list[str]], edges: dict[tuple[str, str], list[Import]]) -> str:
    out = []
    for comp in sccs:
        out.append(f"cycle between {', '.join(comp)}:")
        members = set(comp)
        for (a, b), imps in sorted(edges.items()):
            if a in members and b in members:
                out.extend(f"  {i}" for i in sorted(imps, key=str))
    return "\n".join(out)


def test_node_mapping() -> None:
    assert node_of("gateway.core.config") == "gateway.core"
    assert node_of("gateway.api.routes_alarms") == "gateway.api"
    assert node_of("gateway.supervisor") == "gateway.supervisor" and node_of("gateway") == "gateway"
    assert node_of("adapters.modbus.spec") == "adapters.modbus" and node_of("adapters.registry") == "adapters"
    assert node_of("alerting.notify.outbox") == "alerting.notify" and node_of("alerting.engine") == "alerting"
    assert node_of("devkit.simulator.plant") == "devkit"
    assert top_of("gateway.api.app") == "gateway" and top_of("gateway.core.models") == "gateway.core"


def test_no_import_cycle_between_packages() -> None:
    sccs, edges = _cycles(node_of)
    assert not sccs, _cycle_report(sccs, edges)


def test_no_import_cycle_between_top_level_packages() -> None:
    sccs, edges = _cycles(top_of)
    assert not sccs, _cycle_report(sccs, edges)


# --------------------------------------------------------------------------- without devkit

_NO_DEVKIT = textwrap.dedent(
    """
    import sys
    sys.modules["devkit"] = None  # what a runtime-only install looks like: `import devkit` fails
    """
)


def _run_without_devkit(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _NO_DEVKIT + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_every_runtime_module_imports_without_devkit() -> None:
    runtime = sorted(m for m in modules() if _within(m, *RUNTIME) and m != "gateway.__main__")
    proc = _run_without_devkit(
        f"""
        import importlib
        for name in {runtime!r}:
            importlib.import_module(name)
        print("imported", len({runtime!r}))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"imported {len(runtime)}" in proc.stdout


def test_cli_without_devkit_runs_and_refuses_simulate_and_demo_clearly() -> None:
    demo = ROOT / "config" / "demo-site.yaml"
    proc = _run_without_devkit(
        f"""
        from gateway.cli import main, build_parser
        build_parser().parse_args(["simulate", "-c", "x.yaml", "--scenario", "lpg-leak"])
        print("check", main(["check", "-c", {str(demo)!r}]))
        print("simulate", main(["simulate", "-c", {str(demo)!r}]))
        print("demo", main(["demo", "--duration", "1"]))
        """
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "check 0" in proc.stdout
    assert "simulate 2" in proc.stdout and "demo 2" in proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert "`hazardgw simulate` needs the development kit (the devkit package)" in errors[0]
    assert "`hazardgw demo` needs the development kit" in errors[1]
