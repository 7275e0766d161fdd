"""Data flows one way (shared DESIGN.md): the engine imports no application or service, suites import no service.
Parsed from the source (ast), so a lazy import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "fastadapt"
ENGINE = ("data", "tasks", "models", "algorithms", "training", "evaluation")
APPLICATIONS = ("suites", "recsys", "text")
SERVICES = ("online", "tuning", "serve", "cli", "data_cli")


def imported(path: Path, root: Path = PACKAGE) -> set[str]:
    """The ``fastadapt`` sub-packages a module under ``root`` imports (first component after ``fastadapt.``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    depth = len(path.relative_to(root).parts) - 1  # package levels between the module and fastadapt/
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level > depth:  # relative to fastadapt/ itself: `from .. import x` or `from ..x import y`
                names = ["fastadapt." + (node.module or alias.name) for alias in node.names]
            else:
                continue  # within its own sub-package
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "fastadapt" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules(*ENGINE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_engine_imports_no_application_or_service(path: Path) -> None:
    wrong = imported(path) & {*APPLICATIONS, *SERVICES}
    assert not wrong, f"{path.relative_to(PACKAGE)} imports fastadapt.{sorted(wrong)}: the engine must not"


@pytest.mark.parametrize("path", modules(*APPLICATIONS), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_applications_import_no_service(path: Path) -> None:
    wrong = imported(path) & set(SERVICES)
    assert not wrong, f"{path.relative_to(PACKAGE)} imports fastadapt.{sorted(wrong)}: a suite must not"


def test_the_parser_sees_each_form_of_import(tmp_path: Path) -> None:
    """The checker itself: absolute, relative-to-the-package and lazy imports are all found."""
    module = tmp_path / "fastadapt" / "training" / "_probe.py"
    module.parent.mkdir(parents=True)
    lines = [
        "from ..recsys import X",
        "from . import _y",
        "import fastadapt.online",
        "def f():",
        "    from fastadapt.text import Y",
    ]
    source = "\n".join(lines) + "\n"
    module.write_text(source)
    assert imported(module, tmp_path / "fastadapt") == {"recsys", "online", "text"}
    assert "algorithms" in imported(PACKAGE / "training" / "_build.py")
