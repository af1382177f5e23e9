"""Check that the README names only code that exists.

Every name in single backticks in README.md that looks like Python from Hedwig's code must be
defined (def, class or assignment) in hedwig.py, hedwig_app/*.py, models.py or the tables it
maps in hedwig_schema/*.py:

    `name()`          a function or method
    `@name`           a decorator (a function)
    `Name`            a class, or any name defined at a module's top level
    `NAME_OR_CONST`   a constant (HEDWIG_* are settings, not Python: skipped)
    `Class.attr`      an attribute or method defined in that class's body (with or without ())
    `module.name`     a name defined in hedwig_app/module.py (or models.py, hedwig.py);
                      models.name is any name hedwig_schema/ defines, as models.py re-exports it

File names (`hedwig.py`, `LICENSE`), settings (HEDWIG_*), commands, paths, JSON and the like
are not names of this form, or are skipped.

Names written as `name()` in the README's unlabelled code blocks (the tutorial's diagrams)
are checked too. Every relative link target, e.g. (hedwig_app/auth.py), must exist.

Run from the repository root: python .ci/check_readme_names.py. Exit 1 with a list on failure.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SOURCES = [ROOT / "hedwig.py", ROOT / "models.py", *sorted((ROOT / "hedwig_app").glob("*.py"))]
SCHEMA = sorted((ROOT / "hedwig_schema").glob("*.py"))  # its names count as models.py's

# Tokens that look like Python names but are something else, each with why.
ALLOWLIST = {
    "UPDATE": "SQL",
    "WHERE": "SQL",
    "POST": "an HTTP method",
    "GET": "an HTTP method",
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
CALL = re.compile(rf"^({IDENT})\(\)$")
DECORATOR = re.compile(rf"^@({IDENT})$")
DOTTED = re.compile(rf"^({IDENT})\.({IDENT})(\(\))?$")
CONSTANT = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$")
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
DIAGRAM_CALL = re.compile(rf"\b({IDENT}\(\))")
FILE_NAME = re.compile(r"\.(py|md|txt|toml|csv|db|json|html|png|conf|log)$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclass
class Definitions:
    """What the code defines: every name by module, functions anywhere, class members."""

    top_level: dict[str, set[str]] = field(default_factory=dict)  # module → names
    functions: set[str] = field(default_factory=set)  # defs at any depth, methods included
    members: dict[str, set[str]] = field(default_factory=dict)  # class → its body's names
    strings: set[str] = field(default_factory=set)  # string literals: "status.changed", …

    def anywhere(self) -> set[str]:
        return set().union(*self.top_level.values())


def assigned_names(node: ast.AST) -> set[str]:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    names = set()
    for target in targets:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Name):
                names.add(sub.id)
    return names


def body_names(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        names |= assigned_names(node)
    return names


def read_definitions() -> Definitions:
    found = Definitions()
    for path in SOURCES + SCHEMA:
        tree = ast.parse(path.read_text(), filename=str(path))
        module = "models" if path in SCHEMA else path.stem
        found.top_level.setdefault(module, set()).update(body_names(tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.functions.add(node.name)
            elif isinstance(node, ast.ClassDef):
                found.members.setdefault(node.name, set()).update(body_names(node.body))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.strings.add(node.value)
    return found


def problem_with(token: str, code: Definitions) -> str | None:
    """Why ``token`` names nothing in the code, or None when it does (or is not a name)."""
    if FILE_NAME.search(token) or (ROOT / token).exists():
        return None  # a file: hedwig.py, LICENSE, feedback.csv
    if token in code.strings:
        return None  # a name the code spells out: an event ("status.changed")
    if match := DOTTED.match(token):
        owner, attribute = match.group(1), match.group(2)
        if owner in code.members:
            if attribute not in code.members[owner]:
                return f"class {owner} defines no {attribute}"
        elif owner in code.top_level:
            if attribute not in code.top_level[owner]:
                return f"{owner}.py defines no {attribute}"
        elif owner[0].isupper():
            return f"no class {owner}"
        return None  # e.g. an object's attribute: not checked
    if match := CALL.match(token) or DECORATOR.match(token):
        if match.group(1) not in code.functions:
            return "no such function"
        return None
    if CONSTANT.match(token) and len(token) > 1 and not token.startswith("HEDWIG_"):
        return None if token in code.anywhere() else "no such constant"
    if CAMEL.match(token):
        return None if token in code.anywhere() else "no such class or name"
    return None


def readme_tokens(text: str) -> list[tuple[int, str]]:
    """(line number, token): single-backtick spans outside code blocks, and name() calls in
    the unlabelled code blocks (the diagrams)."""
    tokens, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            continue
        if fence is None:
            tokens += [(number, span.strip()) for span in INLINE_CODE.findall(line)]
        elif fence == "":
            tokens += [(number, call) for call in DIAGRAM_CALL.findall(line)]
    return tokens


def broken_links(text: str) -> list[tuple[int, str]]:
    broken = []
    for number, line in enumerate(text.splitlines(), start=1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):  # a URL, or an anchor
                continue
            if not (ROOT / target.split("#")[0]).exists():
                broken.append((number, target))
    return broken


def main() -> int:
    code = read_definitions()
    text = README.read_text()
    tokens = readme_tokens(text)
    allowlisted = sorted({token for _, token in tokens if token in ALLOWLIST})
    problems = [
        f"README.md:{number}: `{token}`: {why}"
        for number, token in tokens
        if token not in ALLOWLIST and (why := problem_with(token, code))
    ]
    links = broken_links(text)
    problems += [f"README.md:{number}: link ({target}) leads nowhere" for number, target in links]

    checked = {token for _, token in tokens if token not in ALLOWLIST}
    for token in allowlisted:
        print(f"Not checked: `{token}` ({ALLOWLIST[token]})")
    if problems:
        print(f"{len(problems)} name(s) or link(s) in README.md are not in the code:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"README.md: {len(checked)} names, each defined in the code; every link leads somewhere.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
