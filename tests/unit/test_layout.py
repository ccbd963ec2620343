"""The architecture as a test: which packages may import which, and Pyramid only in the web."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pypicache"
# The top-level modules every part may use: the vocabulary of the whole index.
CORE = {"settings", "errors", "models", "db", "names", "digests", "filefacts", "times"}
# What each part may import besides CORE and itself (README.rst, "Architecture").
ALLOWED = {
    "storage": set(),
    "upstream": {"ops.metrics"},
    "auth": set(),
    "cache": {"storage", "upstream", "ops.metrics"},
    "follower": {"cache", "upstream", "ops.metrics"},
    # The rules judge the pages the cache serves.
    "policy": {"cache", "upstream.routing"},
    "private": {"auth", "cache", "storage", "upstream"},
    "ops": {"cache", "storage", "upstream", "follower", "private", "auth", "services", "app"},
    "services": {"auth", "cache", "follower", "ops", "policy", "private", "storage", "upstream"},
    "web": {"services", "auth", "cache", "follower", "ops", "private", "storage", "upstream"},
    "admin": {
        "web",
        "services",
        "auth",
        "cache",
        "follower",
        "ops",
        "policy",
        "private",
        "storage",
    },
    "app": {"services", "web", "ops"},
    "cli": {"app", "services", "auth", "cache", "ops", "policy", "private", "storage", "upstream"},
    # The settings parse the upstream's allowed networks with the URL policy's parser, and
    # the upstreams and routes into the routing module's values.
    "settings": {"upstream.urlpolicy", "upstream.routing"},
    # The app on a loopback port for one command (warm): the web, behind a password.
    "ops.inprocess": {"app", "web.security"},
}
DOMAIN_MODULES = [
    "pypicache.services",
    "pypicache.cli",
    "pypicache.cache.index",
    "pypicache.cache.files",
    "pypicache.cache.retention",
    "pypicache.follower.follower",
    "pypicache.storage.local",
    "pypicache.storage.s3",
    "pypicache.upstream.client",
    "pypicache.private.packages",
    "pypicache.auth.accounts",
    "pypicache.ops.bundle_import",
    "pypicache.ops.bundle_export",
    "pypicache.ops.verify",
    "pypicache.ops.warm",
    "pypicache.ops.reports",
]


def part_of(module: str) -> str:
    """``pypicache.cache.fill`` -> ``cache``; the top-level modules are parts of their own."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def first_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pypicache"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pypicache"))
    return found


def allowed(importer: str, imported: str) -> bool:
    """``importer`` is a part (``cache``) or a module (``ops.inprocess``) of the package."""
    target = imported.split(".")[1:]
    part = importer.split(".")[0]
    if not target or target[0] in CORE or target[0] == part:
        return True
    rules = ALLOWED.get(part, set()) | ALLOWED.get(importer, set())
    return target[0] in rules or ".".join(target[:2]) in rules


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_imports_only_what_its_part_may(path: Path) -> None:
    relative = path.relative_to(PACKAGE).with_suffix("")
    importer = ".".join(p for p in relative.parts if p != "__init__")
    if importer in CORE:
        rules = ALLOWED.get(importer, set())
        wrong = {
            m
            for m in first_party_imports(path)
            if part_of(m) not in CORE | {""} and ".".join(m.split(".")[1:3]) not in rules
        }
    else:
        wrong = {m for m in first_party_imports(path) if not allowed(importer, m)}
    assert not wrong, f"{relative} may not import {sorted(wrong)}"


def test_the_domain_and_the_cli_load_no_web_framework() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in DOMAIN_MODULES)
        + "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyramid', 'webob', 'waitress'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_the_package_itself_is_only_metadata() -> None:
    code = (
        "import sys, pypicache; print(sorted(m for m in sys.modules if m.startswith('pypicache')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "['pypicache']"


def test_readme_architecture_names_every_module() -> None:
    readme = (PACKAGE.parent / "README.rst").read_text()
    section = readme.split("\nArchitecture\n------------\n", 1)[1].split(
        "\nRunning the tests\n", 1
    )[0]
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in MODULES
        if path.stem != "__init__" and not re.search(rf"\b{path.stem}\b", section)
    ]
    assert not unnamed, f"README.rst's Architecture section leaves out {unnamed}"
