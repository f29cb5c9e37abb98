"""The harness's structural rules (docs/architecture.md, issue 14 "Done when"), checked on the source.

Each test reads every ``harness/**/*.py`` and ``tools/**/*.py`` with ``ast`` and ``tokenize`` (nothing
is imported) and fails listing every offender as ``path:line: what``, so one
run tells each owner what to fix.

1. **No import cycle** among harness modules.  The graph holds every import
   of a harness module: module level, inside functions, under ``if
   TYPE_CHECKING:``.  An import names the most specific module it loads
   (``from harness.guest import vng`` -> ``harness.guest.vng``;
   ``from harness.kernels import Kernel`` -> ``harness.kernels``, the
   package's ``__init__``); the parent packages Python also runs are not
   counted.  A package read back counts: ``from P import name`` looks
   ``name`` up in package P's namespace first (a half-initialised one when
   P's ``__init__`` is what is importing the module), so it is also an edge
   to P itself, whatever ``name`` is; ``from P.m import name`` and ``import
   P.m`` name module m and are edges to m only.  So a package ``__init__``
   that imports a module which reads the package back is a cycle.
   ``__main__`` modules are entry points: they may import ``harness.cli``
   and nothing imports them.  Each cycle is printed with the line of every
   edge.
2. **Imports inside functions say why**: a comment on the import's line (any
   line of a multi-line import) or on the line above, e.g. ``# start-up cost:
   scipy takes 0.5 s``, ``# optional dependency``.  Linter pragmas alone
   (``# noqa``, ``# type:``, ``# pragma``) are not a reason.
3. **No function over 60 lines** (``def`` line to last line, decorators not
   counted) unless a comment inside it says why, marked ``long:`` or ``longer
   than 60 lines`` (any case), e.g. ``# long: one workflow template, read top
   to bottom`` or ``# Longer than 60 lines: ...``.
4. **The literal** ``@@harness`` (the guest protocol's marker) appears in
   ``harness/guest/protocol.py`` and the templates it renders
   (``harness/guest/templates/``) only; any file under ``harness/`` counts.
5. **Layers** (docs/architecture.md "Layers"): a module imports only from its own
   layer or a lower one.  ``LAYERS`` below is the table (``pkg.*`` names a
   package and everything in it, a plain name one module; the most specific
   entry wins); a module no entry names is an offender too (place it when you
   add it).  ``__main__`` modules may import ``harness.cli``.  ``tools/`` (chaos,
   bench: the test tools, not in the wheel) is the top layer, so no module of
   the product imports it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"
TOOLS = ROOT / "tools"  # the test tools (chaos, bench): held to the same rules, above every layer of the product
TOP = ("harness", "tools")

MAX_FUNCTION_LINES = 60
LONG_MARKER = re.compile(r"#.*\b(long:|longer than 60 lines)", re.IGNORECASE)
MARKER = "@@harness"
MARKER_HOMES = ("harness/guest/protocol.py", "harness/guest/templates/")
PRAGMA = re.compile(r"^#\s*(noqa|type:|pragma|fmt:|ruff:|isort:)", re.I)

# Lowest first.  A module may import from its own layer and the ones listed before it.
# "harness.kernels.*" is the package and every module in it; "harness.verdict" is that module only.
# A module takes the layer of the most specific entry naming it.
# Layer 2 (guest) is ordered inside: protocol and the transports < machine < remote < backends.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("0 base", (
        "harness", "harness.errors", "harness.options", "harness.sizes", "harness.git", "harness.proc",
        "harness.paths", "harness.registry", "harness.yamlio", "harness.leash", "harness.setup",
    )),
    ("1 inputs", ("harness.report.*", "harness.kernels.*", "harness.images")),
    ("2a guest protocol, transports", (
        "harness.guest.protocol", "harness.guest.ssh", "harness.guest.background", "harness.guest.snapshot.qmp", "harness.guest.snapshot.dump",
    )),
    ("2b guest machine", ("harness.guest.machine",)),
    ("2c guest remote", ("harness.guest.remote",)),
    ("2d guest backends", ("harness.guest.*",)),
    ("3 specs, judging", (
        "harness.repro", "harness.repro.spec", "harness.repro.faults", "harness.repro.syzkaller",
        "harness.repro.adhoc", "harness.repro.syzbot", "harness.verdict", "harness.stats",
        # a kind of run's contract, and the watchdog the driver and the C reproducer's compile boot share
        "harness.repro.kind", "harness.repro.watchdog",
        # fstests' host side (build, config, disks, results, guest staging): what a run of it is made of
        "harness.fstests.*",
    )),
    ("4 run driver, results", (
        "harness.repro.run", "harness.repro.trial", "harness.repro.binaries", "harness.results.*",
        # the C reproducer as a kind of run (it compiles through binaries), and the registry of kinds
        "harness.repro.reproducer", "harness.repro.kinds",
    )),
    ("5 drivers", (
        "harness.prove.*", "harness.matrix.*", "harness.bisect.*", "harness.repro.scaffold",
    )),
    # harness.mcpserver: `harness mcp`'s server, an entry point for agents (it runs the CLI as a subprocess)
    ("6 entry points", ("harness.cli.*", "harness.__main__", "harness.bisect.__main__", "harness.mcpserver")),
    # outside the product (tools/, not in the wheel): bench and chaos drive the harness from outside (timings;
    # faults injected into whole commands), so nothing in harness/ may import them
    ("7 test tools", ("tools.*",)),
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported harness module
    path: str  # file, relative to the repository
    line: int
    in_function: bool
    package_read: bool = False  # `from PACKAGE import name`'s edge to PACKAGE itself (counted for cycles only)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *TOOLS.rglob("*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@cache
def comments(path: Path) -> dict[int, str]:
    """Line -> the comment on it."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def resolve(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The harness modules one import statement loads (most specific module per name)."""
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
        return [_deepest(name) for name in names if name in TOP or name.startswith(tuple(f"{t}." for t in TOP))]
    base = node.module or ""
    if node.level:
        package = module if is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if base not in TOP and not base.startswith(tuple(f"{t}." for t in TOP)):
        return []
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append(full if full in known else _deepest(base))
    return out


def read_package(module: str, node: ast.Import | ast.ImportFrom) -> str | None:
    """The package whose namespace ``from PACKAGE import name`` reads (None: another kind of import)."""
    if not isinstance(node, ast.ImportFrom):
        return None
    base = node.module or ""
    if node.level:
        package = module if is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return base if base in modules() and is_package(base) else None


def _deepest(name: str) -> str:
    known = modules()
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def _walk(node: ast.AST, in_function: bool = False):
    for child in ast.iter_child_nodes(node):
        inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, in_function
        yield from _walk(child, inner)


@cache
def imports() -> tuple[Import, ...]:
    out = []
    for module, path in modules().items():
        for node, in_function in _walk(tree(path)):
            targets = resolve(module, node)
            for target in targets:
                if target != module:
                    out.append(Import(module, target, rel(path), node.lineno, in_function))
            package = read_package(module, node)
            if package is not None and package != module and package not in targets:
                out.append(Import(module, package, rel(path), node.lineno, in_function, package_read=True))
    return tuple(out)


def entry_point(module: str) -> bool:
    return module == "__main__" or module.endswith(".__main__")


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each tangle (``tangles``)."""
    return [_cycle_in(component, edges) for component in tangles(edges)]


def tangles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return components


def _cycle_in(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the component's first module (breadth-first)."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges.get(v, set()) & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component


def cycle_offenders(found: tuple[Import, ...] | None = None) -> list[str]:
    """Per tangle (modules that all reach each other): one cycle, then every import inside the tangle."""
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for imp in imports() if found is None else found:
        if entry_point(imp.source):
            continue
        edges.setdefault(imp.source, set()).add(imp.target)
        where.setdefault((imp.source, imp.target), imp)
    out = []
    for component in tangles(edges):
        members, cycle = set(component), _cycle_in(component, edges)
        inside = sorted((i for (a, b), i in where.items() if a in members and b in members), key=lambda i: (i.path, i.line))
        out.append(
            "cycle " + " -> ".join(cycle) + f" ({len(members)} modules, {len(inside)} imports among them):\n"
            + "\n".join(f"    {i.path}:{i.line}: {i.source} imports {i.target}"
                        + (" (reads the package back)" if i.package_read else "")
                        + (" (in a function)" if i.in_function else "") for i in inside)
        )
    return out


def lazy_import_offenders() -> list[str]:
    out = []
    for path in modules().values():
        notes = comments(path)
        for node, in_function in _walk(tree(path)):
            if not in_function:
                continue
            lines = range(node.lineno - 1, (node.end_lineno or node.lineno) + 1)
            if any(n in notes and not PRAGMA.match(notes[n]) for n in lines):
                continue
            what = ast.unparse(node).replace("\n", " ")
            out.append(f"{rel(path)}:{node.lineno}: import inside a function without a comment saying why: {what}")
    return out


def long_function_offenders() -> list[str]:
    out = []
    for path in modules().values():
        notes = comments(path)
        for node in ast.walk(tree(path)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = node.end_lineno - node.lineno + 1
            if length <= MAX_FUNCTION_LINES:
                continue
            if any(LONG_MARKER.search(notes.get(n, "")) for n in range(node.lineno, node.end_lineno + 1)):
                continue
            out.append(f"{rel(path)}:{node.lineno}: {node.name}() is {length} lines (> {MAX_FUNCTION_LINES}, "
                       f"no '# long: why' comment)")
    return out


def marker_offenders() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*")):
        name = rel(path)
        if not path.is_file() or "__pycache__" in path.parts or name.startswith(MARKER_HOMES):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        out += [f"{name}:{n}: {MARKER!r} outside harness/guest/protocol.py"
                for n, line in enumerate(text.splitlines(), 1) if MARKER in line]
    return out


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the most specific entry naming ``module`` (None: no entry does)."""
    best, rank = -1, None
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            name = entry.removesuffix(".*")
            covers = module == name or (entry.endswith(".*") and module.startswith(name + "."))
            if covers and len(name) > best:
                best, rank = len(name), i
    return rank


def layer_offenders(found: tuple[Import, ...] | None = None) -> list[str]:
    out = [f"{rel(path)}:1: {module} is in no layer (add it to LAYERS in tests/test_architecture.py)"
           for module, path in modules().items() if layer_of(module) is None and found is None]
    for imp in imports() if found is None else found:
        mine, theirs = layer_of(imp.source), layer_of(imp.target)
        if imp.package_read or mine is None or theirs is None or theirs <= mine:
            continue
        if entry_point(imp.source) and imp.target.startswith("harness.cli"):
            continue
        out.append(f"{imp.path}:{imp.line}: {imp.source} (layer {LAYERS[mine][0]}) imports {imp.target} "
                   f"(layer {LAYERS[theirs][0]})")
    return out


def report(offenders: list[str], rule: str) -> str:
    return f"{len(offenders)} offender(s) of '{rule}':\n" + "\n".join(offenders)


def test_no_import_cycle():
    offenders = cycle_offenders()
    assert not offenders, report(offenders, "no import cycle among harness modules")


def test_imports_inside_functions_say_why():
    offenders = lazy_import_offenders()
    assert not offenders, report(offenders, "imports inside functions only with a comment saying why")


def test_no_function_over_60_lines():
    offenders = long_function_offenders()
    assert not offenders, report(offenders, f"no function over {MAX_FUNCTION_LINES} lines without '# long: why'")


def test_protocol_marker_in_protocol_module_only():
    offenders = marker_offenders()
    assert not offenders, report(offenders, f"{MARKER!r} in harness/guest/protocol.py only")


def test_modules_import_from_their_layer_or_below():
    offenders = layer_offenders()
    assert not offenders, report(offenders, "a module imports only from its layer or below (docs/architecture.md)")


# The checks check themselves on small trees, so a rule that finds nothing is not a rule that sees nothing.

def test_cycle_finder_reports_the_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(edges) == [["a", "b", "c", "a"]] and tangles(edges) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}}) == []


def test_a_package_read_back_by_what_its_init_imports_is_a_cycle():
    """kernels/__init__ importing sources, which did `from harness.kernels import build`: a cycle, named so."""
    init = Import("harness.kernels", "harness.kernels.sources", "harness/kernels/__init__.py", 11, False)
    sibling = Import("harness.kernels.sources", "harness.kernels.build", "harness/kernels/sources.py", 29, False)
    back = Import("harness.kernels.sources", "harness.kernels", "harness/kernels/sources.py", 29, False, package_read=True)
    assert cycle_offenders((init, sibling, back)) == [
        "cycle harness.kernels -> harness.kernels.sources -> harness.kernels (2 modules, 2 imports among them):\n"
        "    harness/kernels/__init__.py:11: harness.kernels imports harness.kernels.sources\n"
        "    harness/kernels/sources.py:29: harness.kernels.sources imports harness.kernels (reads the package back)"]
    assert cycle_offenders((init, sibling)) == []  # `import harness.kernels.build as build`: no read back
    assert layer_offenders((back,)) == []  # a package read is a cycle matter, not a layer one
    # and the reader sees the forms: `from P import sub` reads P, `from P.m import x` and `import P.m` do not
    reads = {(i.source, i.target, i.line) for i in imports() if i.package_read}
    assert all(target in modules() and is_package(target) for _, target, _ in reads)
    assert any(s == "harness.cli.kernel" and t == "harness.kernels" for s, t, _ in reads)


def test_checks_see_what_they_check():
    assert LONG_MARKER.search("    # long: one table") and LONG_MARKER.search("# Longer than 60 lines: a template")
    assert not LONG_MARKER.search("belong: x") and not LONG_MARKER.search("    x = 'long: not a comment'")
    assert MARKER in (PACKAGE / "guest" / "protocol.py").read_text()
    upward = Import("harness.kernels.build", "harness.repro.run", "harness/kernels/build.py", 7, True)
    sideways = Import("harness.kernels.build", "harness.images", "harness/kernels/build.py", 8, False)
    assert layer_offenders((upward, sideways)) == [
        "harness/kernels/build.py:7: harness.kernels.build (layer 1 inputs) imports harness.repro.run "
        "(layer 4 run driver, results)"]


def test_every_module_is_read():
    known = modules()
    assert "harness.guest.protocol" in known and "harness.kernels" in known
    assert any(i.in_function for i in imports())
    assert layer_of("harness.guest.protocol") < layer_of("harness.guest.vng") < layer_of("harness.repro.run")
    assert layer_of("harness.kernels.build") == layer_of("harness.kernels")
    assert layer_of("harness.nowhere") is None and layer_of("harness.repro.nowhere") is None
    assert layer_of("harness.bisect.__main__") > layer_of("harness.bisect.driver")
    assert "tools.chaos.kills" in known and "tools.bench.figures" in known
    assert layer_of("tools.bench.figures") > layer_of("harness.cli") > layer_of("harness.prove")
    into_tools = Import("harness.cli.repro", "tools.bench.figures", "harness/cli/repro.py", 3, False)
    assert layer_offenders((into_tools,)) == [
        "harness/cli/repro.py:3: harness.cli.repro (layer 6 entry points) imports tools.bench.figures "
        "(layer 7 test tools)"]
