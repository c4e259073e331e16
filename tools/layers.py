"""`python -m tools.layers [--root DIR]`: lazyreg's import graph, checked against its layers.

Reads the imports of every module under `lazyreg/` with `ast` (nothing is
imported or run), folds them into units (a subpackage such as `sync`, or a
top-level module such as `config`), prints each unit with the units it
imports, and exits 1 with one line per offending import:

- an upward import: a unit imports a unit of its own layer or of a higher one
  (DESIGN.md, "Layout": imports point down);
- from `cli`, any import but the leaf modules: the CLI talks to the server
  only over REST, `serve` apart (see EXCEPTIONS);
- a module in a unit that LAYERS does not place: a new unit needs a layer.

Imports inside functions and under `if TYPE_CHECKING:` count like the others:
a dependency is one whenever it is written.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "lazyreg"

# From the bottom up. A unit may import the units of the layers below its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Leaf modules: they import nothing of lazyreg.
    ("lazyreg", "types", "errors", "worker", "redact", "config", "cache", "taskcontext",
     "clusterauth", "accounting", "supervisor", "memory"),
    # oci: pure data, no I/O; configfile: the settings in force (file, environment, flags)
    ("oci", "configfile"),
    ("storage", "upstream", "db"),
    ("auth", "check"),  # users, tokens, secrets; start-up repair of storage vs. database
    ("services",),  # the long-lived parts a request or task works with
    ("fetch",),  # the lazy store
    ("sync", "space"),  # orchestrate: content from upstreams; disk space
    # A registry mirror (fetches one tag at a time through sync's pieces); export and
    # import of OCI image layouts (the air gap).
    ("pullthrough", "transfer"),
    # What the application holds, as handlers see it; reading a request body within its
    # deadline and cap (for /api, the status page's login and the token server alike).
    ("state", "bodies"),
    ("observe",),  # metrics, request logs, health checks, the status page
    ("registry",),  # the /v2 handlers
    ("cluster",),  # the internal endpoint that peers read downloads from
    ("tasks",),  # runs registered task kinds
    ("api",),
    ("app",),
    ("workers",),  # the supervisor of --workers N: it never loads the application
    ("serve",),
    ("cli",),
)

# Units that may import only the leaf modules, whatever their layer.
LEAVES_ONLY = {"cli": "the CLI talks to the server only over REST"}

# (module file, unit it may import although the rules above say no): why.
EXCEPTIONS = {
    ("lazyreg/cli/serve.py", "serve"): "`lazyreg serve` runs the server in the CLI's process",
    ("lazyreg/cli/serve.py", "configfile"): "`lazyreg serve` reads the server's settings",
    ("lazyreg/cli/config.py", "configfile"): "`lazyreg config` shows and checks the settings",
    ("lazyreg/cli/db.py", "serve"): "`lazyreg db upgrade` migrates the server's database",
}


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the root
    line: int
    source: str  # its unit
    target: str  # the imported unit


def layer_of() -> dict[str, int]:
    return {unit: n for n, units in enumerate(LAYERS) for unit in units}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(root: Path, module: str) -> str | None:
    """The unit of a dotted module name of the package; None outside it."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return PACKAGE
    return parts[1]


def _is_part(root: Path, name: str) -> bool:
    """Whether `lazyreg.<name>` is a module or subpackage (not a name in lazyreg/__init__)."""
    base = root / PACKAGE / name
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(root: Path, path: Path) -> Iterator[Import]:
    module = _module_name(root, path)
    source = _unit(root, module)
    assert source is not None
    rel = path.relative_to(root).as_posix()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=rel)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == PACKAGE:
                targets = [f"{PACKAGE}.{a.name}" if _is_part(root, a.name) else PACKAGE
                           for a in node.names]
            else:
                targets = [base]
        for target in targets:
            unit = _unit(root, target)
            if unit is not None and unit != source:
                yield Import(rel, node.lineno, source, unit)


def collect(root: Path) -> list[Import]:
    found: list[Import] = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        found.extend(imports_of(root, path))
    return found


def problems(root: Path, found: list[Import]) -> list[str]:
    layers = layer_of()
    out: list[str] = []
    units = {_unit(root, _module_name(root, p)) for p in (root / PACKAGE).rglob("*.py")}
    for unit in sorted(u for u in units if u is not None and u not in layers):
        out.append(f"{PACKAGE}/{unit}: unit {unit!r} is in no layer of tools/layers.py")
    for imp in found:
        if (imp.path, imp.target) in EXCEPTIONS:
            continue
        if imp.source not in layers or imp.target not in layers:
            continue  # reported above
        where = f"{imp.path}:{imp.line}: {imp.source} imports {imp.target}"
        if imp.source in LEAVES_ONLY and layers[imp.target] > 0:
            out.append(f"{where}: {LEAVES_ONLY[imp.source]}")
        elif layers[imp.target] >= layers[imp.source]:
            out.append(f"{where}: upward (layer {layers[imp.source]} imports layer"
                       f" {layers[imp.target]})")
    return out


def graph(found: list[Import]) -> str:
    edges: dict[str, set[str]] = {unit: set() for units in LAYERS for unit in units}
    for imp in found:
        edges.setdefault(imp.source, set()).add(imp.target)
    layers = layer_of()
    lines = []
    for unit in sorted(edges, key=lambda u: (layers.get(u, len(LAYERS)), u)):
        layer = layers.get(unit)
        targets = ", ".join(sorted(edges[unit], key=lambda u: (layers.get(u, 99), u))) or "-"
        lines.append(f"{'?' if layer is None else layer:>2} {unit:<12} -> {targets}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.layers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository (default: this checkout)")
    parser.add_argument("--quiet", action="store_true", help="print only the problems")
    args = parser.parse_args(argv)
    found = collect(args.root)
    if not args.quiet:
        print(f"layer unit -> units it imports ({PACKAGE}/, from the bottom layer up)")
        print(graph(found))
    bad = problems(args.root, found)
    for line in bad:
        print(line, file=sys.stderr)
    if not args.quiet:
        print(f"{len(bad)} offending import(s)" if bad else "no upward import")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
