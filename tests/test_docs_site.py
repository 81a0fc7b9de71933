"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a missing reference
or a page left out of the nav fails it), its API reference documents every public name, every
public name has a docstring whose parameters are the signature's, and the README stays the short
page a first visit needs.

CI runs the build here, inside the one test command, so that ``pytest`` alone tells a developer
that a docstring or a page broke the site, and so that the reference checks read the inventory of
the very site that was built.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from tests import docs_blocks
from tests.docs_blocks import REPO

# The modules users import or name in class paths; their public names are ``__all__`` where the
# module has one, else every class and function it defines whose name has no leading underscore.
PUBLIC_MODULES = [
    "seglab",
    "seglab.callbacks",
    "seglab.data",
    "seglab.data.rasters",
    "seglab.data.stats",
    "seglab.errors",
    "seglab.inference",
    "seglab.losses",
    "seglab.models",
    "seglab.optim",
]


def public_names(module: ModuleType) -> dict[str, object]:
    if hasattr(module, "__all__"):
        return {name: getattr(module, name) for name in module.__all__}
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    }


def public_objects() -> dict[str, object]:
    """``module.name`` -> object, for every public name of the public modules."""
    found = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name, obj in public_names(module).items():
            found[f"{module_name}.{name}"] = obj
    return found


def own_doc(obj: object) -> str | None:
    """The object's own docstring (a class without one would show its base's with getdoc)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc and doc.strip() else None


def new_public_methods(cls: type) -> dict[str, object]:
    """The public methods and properties a class adds (overrides of a base's take its meaning)."""
    found = {}
    for name, member in vars(cls).items():
        if name.startswith("_") or any(hasattr(base, name) for base in cls.__mro__[1:]):
            continue
        if inspect.isfunction(member) or isinstance(member, property | classmethod | staticmethod):
            found[name] = member.fget if isinstance(member, property) else member
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    problems = [line for line in run.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert run.returncode == 0 and not problems, "\n".join(problems) or run.stderr[-5000:]
    return out


def inventory(site: Path) -> list[tuple[str, str]]:
    """``(identifier, role)`` of the built site's objects inventory (what the reference documents),
    e.g. ``("seglab.losses.WeightedSum", "py:class")``."""
    data = (site / "objects.inv").read_bytes()
    body = zlib.decompress(data.split(b"\n", 4)[4]).decode()
    return [tuple(line.split(" ", 2)[:2]) for line in body.splitlines()]


def resolve(identifier: str) -> list[object]:
    """The objects an inventory identifier can name. A package may export a function under its
    submodule's name (``seglab.inference.sliding_window``): ``a.b.c`` is tried as attributes of
    ``a`` and as an attribute of the longest importable module ``a.b``."""
    parts = identifier.split(".")
    found = []
    for start in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:start]))
        except ImportError:
            continue
        try:
            for part in parts[start:]:
                obj = getattr(obj, part)
        except AttributeError:
            continue
        found.append(obj)
    return found


def test_the_site_builds_strict_with_every_page_in_it(site):
    pages = {p.relative_to(REPO / "docs").with_suffix("") for p in (REPO / "docs").rglob("*.md")}
    built = {p for p in pages if (site / p / "index.html").exists() or p.name == "index"}
    assert built == pages, pages - built
    assert "SegmentationModule" in (site / "reference" / "module" / "index.html").read_text()


def test_every_public_name_is_in_the_api_reference(site):
    rendered = {
        id(obj)
        for identifier, role in inventory(site)
        for obj in resolve(identifier)
        if inspect.ismodule(obj) == (role == "py:module")
    }
    missing = [name for name, obj in public_objects().items() if id(obj) not in rendered]
    assert not missing, f"add these to a page of docs/reference/: {missing}"


def test_every_public_name_has_a_docstring():
    missing = []
    for name, obj in public_objects().items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # a constant: documented where it is defined, if at all
        if own_doc(obj) is None:
            missing.append(name)
        if inspect.isclass(obj):
            missing += [
                f"{name}.{m}" for m, f in new_public_methods(obj).items() if own_doc(f) is None
            ]
    assert not missing, f"these public names have no docstring: {sorted(set(missing))}"


ARGS_SECTION = re.compile(r"^(Args|Arguments|Parameters):\n((?:[ \t]+.*\n?|\n)+)", flags=re.M)


def documented_parameters(doc: str) -> list[str]:
    """The names of a Google-style docstring's Args section (``a, b: ...`` documents both)."""
    match = ARGS_SECTION.search(doc + "\n")
    if match is None:
        return []
    lines = [line for line in match.group(2).splitlines() if line.strip()]
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    names = []
    for line in lines:
        if len(line) - len(line.lstrip()) == indent and ":" in line:
            names += [n.strip().lstrip("*") for n in line.split(":", 1)[0].split(",")]
    return names


def test_documented_parameters_are_the_signatures():
    """What the docstrings say about parameters drifts no further than the signatures."""
    wrong = []
    for name, obj in public_objects().items():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or own_doc(obj) is None:
            continue
        try:
            parameters = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        documented = documented_parameters(own_doc(obj))
        wrong += [f"{name}: {p}" for p in documented if p not in parameters]
    assert not wrong, f"documented but not parameters: {wrong}"


def test_documented_parameters_reads_grouped_names():
    doc = "Does.\n\nArgs:\n    a, b: the two.\n        More about them: here.\n    **c: rest.\n"
    assert documented_parameters(doc) == ["a", "b", "c"]


def test_the_readme_is_a_first_visit():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    quickstart = ["pip install -e .", "seglab fit --config experiments/quickstart.yaml"]
    tests = ['pip install -e ".[dev]"', "ruff check .", "ruff format --check .", "pytest"]
    assert docs_blocks.shell_commands(REPO / "README.md")[:6] == quickstart + tests
    for link in re.findall(r"\]\(((?!https?://)[^)#]+)", readme):
        assert (REPO / link).exists(), f"README links to {link}, which is not there"
