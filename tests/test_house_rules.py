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


# Modules outside runners/ that may import it: the thin `python -m` entry shims, and the Lightning
# callbacks (run machinery only the runners instantiate; AdaptiveThreads reads runners.threads).
RUNNER_IMPORTERS = {
    "train.py",
    "pipeline.py",
    "evaluate.py",
    "predict.py",
    "export.py",
    "federate.py",
    "scaling/__main__.py",
    "callbacks.py",
}


def _absolute_imports(path: Path) -> set[str]:
    """Every module ``path`` imports (relative imports made absolute), at any depth of the file."""
    package = ("recsys_lab", *path.relative_to(PACKAGE).parent.parts)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *(node.module.split(".") if node.module else ())))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_nothing_below_the_runners_imports_them():
    """DESIGN.md's layout: runners/ runs everything; models, data, tasks, objectives, federated and
    scaling never import it (only the thin entry shims do), so no layer reaches up to an entry point."""
    offenders = {
        str(rel): sorted(m for m in _absolute_imports(p) if m.split(".")[:2] == ["recsys_lab", "runners"])
        for p in sorted(PACKAGE.rglob("*.py"))
        if (rel := p.relative_to(PACKAGE)).parts[0] != "runners" and rel.as_posix() not in RUNNER_IMPORTERS
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"modules outside recsys_lab/runners/ import it: {offenders}"


def test_entry_shims_stay_thin():
    """The top-level `python -m recsys_lab.<entry>` modules only hand over to their runner."""
    for name in ("train", "pipeline", "evaluate", "predict", "export", "federate"):
        lines = [ln for ln in (PACKAGE / f"{name}.py").read_text().splitlines() if ln.strip()]
        assert len(lines) <= 5, f"recsys_lab/{name}.py should be a thin shim over recsys_lab.runners"
