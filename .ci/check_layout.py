"""The house's rules, checked: `make lint` runs this before the tests.

- hedwig.py and models.py are maps: at most 250 lines each.
- Each module of hedwig_app/ and of hedwig_schema/ has a docstring, at most 700 lines, and
  no function over 50.
- Imports run one way: a module imports only the modules listed before it in its package's
  __init__.py, so no two modules import each other, directly or around a circle.
- The tables are below the app: hedwig_schema/ and models.py import nothing from hedwig_app/
  (and the schema nothing from models.py, which maps it), and hedwig_app/ reads the tables
  through models.py alone, never from hedwig_schema/ directly.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP, SCHEMA = "hedwig_app", "hedwig_schema"
MAPS = ("hedwig.py", "models.py")
MAP_LINES_MAX = 250
MODULE_LINES_MAX = 700
FUNCTION_LINES_MAX = 50
# What each package's modules may not import, and why.
FORBIDDEN = {
    APP: {SCHEMA: "the app reads the tables through models.py"},
    SCHEMA: {APP: "the tables are below the app", "models": "models.py maps the schema"},
}


def declared_order(package: str) -> list[str]:
    """The modules as the package's __init__.py lists them, lowest first."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    return re.findall(r"^    (\w+) {2,}", doc, re.MULTILINE)


def imported_modules(tree: ast.Module, package: str) -> list[tuple[str, int, bool]]:
    """Each module imported, by its dotted name ("hedwig_app.auth", "models", "flask"), its
    line, and whether at the module's top level. ``from hedwig_app import auth`` imports the
    module hedwig_app.auth; a relative import is resolved within ``package``."""
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = ".".join(filter(None, [package, module]))
            if module in (APP, SCHEMA):
                names = [f"{module}.{alias.name}" for alias in node.names]
            elif module:
                names = [module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found += [(name, node.lineno, id(node) in top_level) for name in names]
    return found


def size_problems(where: str, source: str, tree: ast.Module) -> list[str]:
    found = []
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
    return found


def import_problems(where: str, package: str, name: str, tree: ast.Module) -> list[str]:
    order = declared_order(package)
    found = []
    for imported, line, top_level in imported_modules(tree, package):
        root, _, module = imported.partition(".")
        for forbidden, why in FORBIDDEN[package].items():
            if root == forbidden:
                found.append(f"{where}:{line} imports {imported}: {why}")
        if root != package or not module:
            continue
        module = module.split(".")[0]
        if module not in order:
            found.append(f"{where}:{line} imports {package}.{module}, which is not listed")
        elif order.index(module) >= order.index(name):
            found.append(f"{where}:{line} imports {module}, listed after it: imports run one way")
        elif not top_level:
            found.append(f"{where}:{line} imports {module} inside a function")
    return found


def package_problems(package: str) -> list[str]:
    order = declared_order(package)
    modules = sorted(p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__")
    if sorted(order) != modules:
        return [f"{package}/__init__.py lists {order}, the package holds {modules}"]
    found = []
    for name in modules:
        where = f"{package}/{name}.py"
        source = (ROOT / where).read_text()
        tree = ast.parse(source)
        found += size_problems(where, source, tree)
        found += import_problems(where, package, name, tree)
    return found


def problems() -> list[str]:
    found = []
    for map_file in MAPS:
        map_lines = len((ROOT / map_file).read_text().splitlines())
        if map_lines > MAP_LINES_MAX:
            found.append(f"{map_file} has {map_lines} lines, more than {MAP_LINES_MAX}")
    models = ast.parse((ROOT / "models.py").read_text())
    for imported, line, _ in imported_modules(models, ""):
        if imported.partition(".")[0] == APP:
            found.append(f"models.py:{line} imports {imported}: the tables are below the app")
    for package in (APP, SCHEMA):
        found += package_problems(package)
    return found


if __name__ == "__main__":
    failures = problems()
    for failure in failures:
        print(failure, file=sys.stderr)
    sys.exit(1 if failures else 0)
