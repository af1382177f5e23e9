"""The house's rules, checked: `make lint` runs this before the tests.

- hedwig.py is the map: at most 250 lines.
- Each module of hedwig_app/ has a docstring, at most 700 lines, and no function over 50.
- Imports run one way: a module imports only the modules listed before it in
  hedwig_app/__init__.py, so no two modules import each other, directly or around a circle.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hedwig_app"
MAP_LINES_MAX = 250
MODULE_LINES_MAX = 700
FUNCTION_LINES_MAX = 50


def declared_order() -> list[str]:
    """The modules as hedwig_app/__init__.py lists them, lowest first."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text())) or ""
    return re.findall(r"^    (\w+) {2,}", doc, re.MULTILINE)


def imported_modules(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """Each hedwig_app module imported, its line, and whether at the module's top level."""
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "hedwig_app":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("hedwig_app."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [
                alias.name.split(".")[1]
                for alias in node.names
                if alias.name.startswith("hedwig_app.")
            ]
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


def problems() -> list[str]:
    found = []
    map_lines = len((ROOT / "hedwig.py").read_text().splitlines())
    if map_lines > MAP_LINES_MAX:
        found.append(f"hedwig.py has {map_lines} lines, more than {MAP_LINES_MAX}")
    order = declared_order()
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    if sorted(order) != modules:
        found.append(f"hedwig_app/__init__.py lists {order}, the package holds {modules}")
        return found
    for name in modules:
        path = PACKAGE / f"{name}.py"
        source = path.read_text()
        tree = ast.parse(source)
        where = f"hedwig_app/{name}.py"
        if not ast.get_docstring(tree):
            found.append(f"{where} has no docstring saying what it owns")
        lines = len(source.splitlines())
        if lines > MODULE_LINES_MAX:
            found.append(f"{where} has {lines} lines, more than {MODULE_LINES_MAX}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES_MAX:
                    found.append(f"{where}:{node.lineno} {node.name}() has {length} lines")
        for imported, line, top_level in imported_modules(tree):
            if imported not in order:
                found.append(f"{where}:{line} imports hedwig_app.{imported}, which is not listed")
            elif order.index(imported) >= order.index(name):
                found.append(
                    f"{where}:{line} imports {imported}, listed after it: imports run one way"
                )
            elif not top_level:
                found.append(f"{where}:{line} imports {imported} inside a function")
    return found


if __name__ == "__main__":
    failures = problems()
    for failure in failures:
        print(failure, file=sys.stderr)
    sys.exit(1 if failures else 0)
