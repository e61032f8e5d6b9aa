"""The routing core stays free of I/O, threads and clocks; modules stay small; the API is documented."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pytest

import sig

SIG_DIR = pathlib.Path(sig.__file__).resolve().parent
CORE_MODULES = ["_router.py", "_sender.py", "_event.py", "_ident.py", "_errors.py", "_peer.py"]
FORBIDDEN = {"socket", "select", "selectors", "asyncio", "time", "subprocess", "serial", "ssl"}
MAX_LINES = 500


def imported_modules(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """Return (top-level module, imported names) for every import statement."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name.split(".")[0], []))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], [alias.name for alias in node.names]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(("__import__", []))
    return found


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io(module: str) -> None:
    tree = ast.parse((SIG_DIR / module).read_text(encoding="utf-8"), filename=module)
    imports = imported_modules(tree)
    names = {name for name, _ in imports}
    assert not names & FORBIDDEN, "%s imports %s" % (module, sorted(names & FORBIDDEN))
    assert "__import__" not in names
    assert "importlib" not in names
    assert "_thread" not in names
    if module != "_router.py":
        assert "threading" not in names, "%s must not use threading" % module


def test_router_uses_threading_only_for_rlock() -> None:
    tree = ast.parse((SIG_DIR / "_router.py").read_text(encoding="utf-8"))
    threading_imports = [names for name, names in imported_modules(tree) if name == "threading"]
    assert threading_imports == [["RLock"]], "only `from threading import RLock` is allowed"
    # no `threading.X` attribute access either, and RLock is only ever instantiated
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert node.value.id != "threading"
    rlock_uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "RLock"]
    assert rlock_uses, "RLock is imported but unused"


def test_core_has_no_sleep_or_wait_calls() -> None:
    for module in CORE_MODULES:
        tree = ast.parse((SIG_DIR / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {"sleep", "wait", "acquire", "join"}, (module, node.func.attr)


def test_no_module_over_the_line_budget() -> None:
    """Every module of the four packages (sig, sig_mqtt, sig_apps, bridge) stays under the budget."""
    root = SIG_DIR.parent
    packages = ("sig", "sig_mqtt", "sig_apps", "bridge")
    modules = sorted(path for package in packages for path in (root / package).rglob("*.py"))
    assert len(modules) > 60
    too_long = {}
    for path in modules:
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            too_long[str(path.relative_to(root))] = count
    assert not too_long, "modules over %d lines: %r" % (MAX_LINES, too_long)


def constant_is_documented(name: str) -> bool:
    """A module-level constant is documented by a ``#:`` comment right above its assignment."""
    for path in SIG_DIR.glob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            assigned = line.startswith(("%s = " % name, "%s: " % name))
            if assigned and index > 0 and lines[index - 1].lstrip().startswith("#:"):
                return True
    return False


@pytest.mark.parametrize("name", sig.__all__)
def test_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(sig, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        assert doc and doc.strip(), "%s has no docstring of its own" % name
    else:
        assert constant_is_documented(name), "%s has no `#:` doc comment" % name


@pytest.mark.parametrize("cls", [sig.Router, sig.Sender, sig.Event, sig.Signal], ids=lambda c: c.__name__)
def test_public_methods_have_docstrings(cls: type) -> None:
    missing = [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value) and not (value.__doc__ or "").strip()
    ]
    assert not missing, "%s methods without docstring: %s" % (cls.__name__, missing)


def test_all_names_exist() -> None:
    for name in sig.__all__:
        assert hasattr(sig, name), name
    assert len(set(sig.__all__)) == len(sig.__all__)
