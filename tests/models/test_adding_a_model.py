"""Adding a model touches three files (DESIGN.md rule 2, docs/architecture.md): the model
``recsys_lab/models/<name>.py``, its config ``conf/model/<name>.yaml`` and its tests under
``tests/models/``. No registry: a config's ``_target_`` is the only wiring."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recsys_lab.models.base import CTRModel

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "recsys_lab" / "models"
NOT_MODELS = {"__init__", "base"}  # the package and the shared base classes
MODULES = sorted(p.stem for p in MODELS.glob("*.py") if p.stem not in NOT_MODELS)
CONFIGS = sorted((ROOT / "conf" / "model").glob("*.yaml"))


def _target(path: Path) -> str:
    cfg = OmegaConf.load(path)
    if "_target_" in cfg:
        return str(cfg._target_)
    return str(cfg.model._target_)  # a `# @package _global_` config (model: ... beside other groups)


def _imported_modules(path: Path) -> set[str]:
    """The ``recsys_lab.models.<name>`` modules a test file imports (``import`` / ``from``)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m.rsplit(".", 1)[-1] for m in out if m.startswith("recsys_lab.models.")}


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_model_config_targets_a_model_class_defined_in_models(config: Path) -> None:
    module, _, name = _target(config).rpartition(".")
    assert module.startswith("recsys_lab.models."), (
        f"{config.name}: _target_ {module}.{name} is outside models/"
    )
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, CTRModel), f"{config.name}: {name} is not a CTRModel"
    assert cls.__module__ == module, f"{config.name}: {name} is defined in {cls.__module__}, not {module}"


def test_every_model_file_has_a_config_and_tests() -> None:
    """Each models/<name>.py is some config's target and is imported by a tests/models/ file
    (``test_<name>.py``; one file may cover a family, e.g. test_ocarm.py)."""
    targeted = {_target(p).rsplit(".", 2)[-2] for p in CONFIGS}
    tested: set[str] = set()
    for path in (ROOT / "tests" / "models").glob("test_*.py"):
        tested |= _imported_modules(path)
    assert not set(MODULES) - targeted, (
        f"models without a conf/model config: {sorted(set(MODULES) - targeted)}"
    )
    assert not set(MODULES) - tested, (
        f"models without tests under tests/models/: {sorted(set(MODULES) - tested)}"
    )


def test_the_models_package_registers_nothing() -> None:
    """No string registry: ``recsys_lab/models/__init__.py`` holds a docstring only."""
    body = ast.parse((MODELS / "__init__.py").read_text()).body
    assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)
