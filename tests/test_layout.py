"""The code's shape: handlers on top of functions/, domain packages beneath, the platform under both.

A reader finds any behaviour from serverless.yml in two hops; these checks keep it that way.
"""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
CODE_DIRS = ("functions", "runtime", "stream_apps")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _handler_modules() -> set[str]:
    manifest = yaml.safe_load((ROOT / "serverless.yml").read_text())
    modules = set()
    for spec in manifest["functions"].values():
        path, _, attr = spec["handler"].rpartition(".")
        assert attr == "handler" and path.startswith("functions/") and path.count("/") == 1, spec["handler"]
        modules.add(path.removeprefix("functions/"))
    return modules


def _modules() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module this file imports, as dotted names (`from a import b` yields a.b and a)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def test_the_top_of_functions_holds_exactly_the_handlers_serverless_yml_names():
    handlers = _handler_modules()
    top = {p.stem for p in FUNCTIONS.glob("*.py")} - {"__init__"}
    assert top - handlers == set(), f"not handlers (move them into a package): {sorted(top - handlers)}"
    assert handlers - top == set(), f"named in serverless.yml but missing: {sorted(handlers - top)}"
    for name in handlers:
        tree = ast.parse((FUNCTIONS / f"{name}.py").read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "handler" for n in tree.body), name


def test_every_package_says_what_lives_in_it():
    for package in (p for p in FUNCTIONS.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), package.name


def test_imports_point_down_handlers_over_packages_over_runtime():
    handlers = {f"functions.{name}" for name in _handler_modules()}
    for path in _modules():
        me = _dotted(path)
        imported = _imports(path)
        if me.startswith("runtime"):
            up = {m for m in imported if m.split(".")[0] in ("functions", "stream_apps")}
            assert not up, f"{me} (the platform) imports {sorted(up)}"
            continue
        up = imported & handlers - {me}
        assert not up, f"{me} imports the handler module(s) {sorted(up)}; shared code belongs in a package"
        if me.startswith("functions.") and me not in handlers:
            assert not {m for m in imported if m.startswith("stream_apps")}, f"{me} imports stream_apps"


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _modules():
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{_dotted(path)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{_dotted(path)}.{node.name}: {length} lines")
    assert not too_long, too_long
