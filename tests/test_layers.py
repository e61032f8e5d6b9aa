"""The import graph: layers point down, and no package reaches into another's private modules.

Read from the source with :mod:`ast` (every ``import``, at module level or inside a function):

    bridge  ->  sig_apps  ->  sig_mqtt  ->  sig
       \\______________________/__________/

* ``sig`` (core, network, carriers) imports the standard library only (``serial``, from the
  ``serial`` extra, in its serial carrier) -- nothing of ``sig_mqtt``, ``sig_apps``, ``bridge``,
  aiohttp or paho;
* ``sig_mqtt`` imports ``sig``, paho and amqtt; ``sig_apps`` imports both libraries (and aiohttp
  for ``sig web``); ``bridge`` imports all three;
* across packages only public modules and names: no ``from sig._codec import ...``.

The two compatibility entry points of the moved ``sig`` command (``sig/cli.py`` and
``python -m sig``, kept for one release) are the only edges that point up.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"sig": 0, "sig_mqtt": 1, "sig_apps": 2, "bridge": 3}
THIRD_PARTY = {
    "sig": {"serial"},
    "sig_mqtt": {"paho", "amqtt"},
    "sig_apps": {"paho", "aiohttp", "tomli"},
    "bridge": set(),
}
#: Edges allowed to point up: the old paths of the ``sig`` command, re-exporting it for one release.
COMPAT_UPWARD = {("sig/cli.py", "sig_apps.cli"), ("sig/__main__.py", "sig_apps.cli")}


def modules() -> list[Path]:
    return sorted(path for package in LAYERS for path in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """``(absolute module, imported names, line)`` of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def is_private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def edges() -> list[tuple[str, str, str, list[str], int]]:
    """``(file, its package, imported module, names, line)`` for the four packages."""
    out = []
    for path in modules():
        rel = str(path.relative_to(ROOT))
        for target, names, line in imports_of(path):
            out.append((rel, rel.split("/")[0], target, names, line))
    return out


def test_the_walk_sees_the_known_edges() -> None:
    """The test itself works: it finds imports we know are there (so an empty result means something)."""
    found = {(rel, target) for rel, _, target, _, _ in edges()}
    assert ("sig_mqtt/_link.py", "paho.mqtt.client") in found
    assert ("bridge/service.py", "sig_mqtt") in found
    assert ("sig_apps/web/_app.py", "sig_apps.web._eventlog") in found  # a relative import, resolved
    assert len(found) > 200


def test_layers_point_down() -> None:
    upward = []
    for rel, package, target, _, line in edges():
        top = target.split(".")[0]
        if top in LAYERS and LAYERS[top] > LAYERS[package] and (rel, target) not in COMPAT_UPWARD:
            upward.append("%s:%d imports %s" % (rel, line, target))
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_private_module_or_name_across_packages() -> None:
    private = []
    for rel, package, target, names, line in edges():
        top = target.split(".")[0]
        if top not in LAYERS or top == package:
            continue
        if is_private(target) or any(is_private(name) for name in names):
            private.append("%s:%d imports %s %s" % (rel, line, target, names))
    assert not private, "private modules or names used across packages:\n" + "\n".join(private)


def test_third_party_imports_stay_in_their_layer() -> None:
    stray = []
    for rel, package, target, _, line in edges():
        top = target.split(".")[0]
        if not top or top in LAYERS or top in sys.stdlib_module_names or top == "__future__":
            continue
        allowed = set().union(*(THIRD_PARTY[p] for p, rank in LAYERS.items() if rank <= LAYERS[package]))
        if top not in allowed:
            stray.append("%s:%d imports %s" % (rel, line, target))
    assert not stray, "third-party imports outside their layer:\n" + "\n".join(stray)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_package_is_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").exists()


def test_every_exception_of_the_four_packages_is_a_sig_error() -> None:
    """One error tree: what sig, sig_mqtt, the applications and the bridge raise of their own is a SigError."""
    import importlib
    import inspect
    import pkgutil

    import sig

    found = []
    for package in LAYERS:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                    found.append(cls)
    assert len(found) > 20
    strays = [cls.__module__ + "." + cls.__qualname__ for cls in found if not issubclass(cls, sig.SigError)]
    assert not strays, "exceptions outside the sig.SigError tree: %s" % strays
