"""DESIGN.md's rule 1: models/, layers/, kernels/ and data/ (and objectives/, plain nn.Modules) never import Lightning."""

import ast
import subprocess
import sys
from pathlib import Path

import recsys_lab

PACKAGE = Path(recsys_lab.__file__).parent
PURE = ("models", "layers", "kernels", "data", "objectives")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pure_packages_do_not_import_lightning_in_source():
    offenders = [
        str(p.relative_to(PACKAGE))
        for sub in PURE
        for p in sorted((PACKAGE / sub).rglob("*.py"))
        if _imports(p) & {"lightning", "pytorch_lightning"}
    ]
    assert offenders == [], f"Lightning imported in pure packages: {offenders}"


def test_importing_pure_packages_does_not_load_lightning():
    modules = sorted(
        ".".join(("recsys_lab", *p.relative_to(PACKAGE).with_suffix("").parts))
        for sub in PURE
        for p in (PACKAGE / sub).rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
