"""Regression guard of the synthetic world's output: every preset (shrunk to a few hundred users)
and the sample variants built on it (exposures with histories, conversions with onboarding
content, the explicit history sums) hash to frozen digests, so a refactor of
``recsys_lab.data.synthetic.world`` that changes a single draw fails here.

The digests are of the arrays rounded to 6 decimals (so that a BLAS with other rounding does not
trip it); ``--exact`` hashes the bytes themselves, for a strict before/after check on one machine.

Refresh (only after a change that is *meant* to change the data; say so in the commit):

    PYTHONPATH=$PWD python tests/data/test_world_determinism.py          # prints DIGESTS
    PYTHONPATH=$PWD python tests/data/test_world_determinism.py --exact  # bytes, not rounded
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import numpy as np
import pytest
import torch

from recsys_lab.data.synthetic.sequences import WorldSamples
from recsys_lab.data.synthetic.world import WORLD_PRESETS, World, WorldSpec

# Each preset's own knobs stay; only its size shrinks (a few hundred users, a few days).
SHRINK = {
    "num_users": 300,
    "num_items": 500,
    "num_days": 6,
    "users_per_shard": 128,
    "calibration_users": 400,
    "calibration_days": 4,
}

DIGESTS = {
    "tiny": "76ec0df732d7348cbb27bba545552c6cf0ae643ba74485c7cb29f7f697d49d58",
    "small": "0b3e6ce6ae923245613e117df1b5efaf5dde8e79c31658cf7ace610c83b244df",
    "retention": "3f2e2bd3c4b3df58cd440e47c3cb408fa4f7bd3479fc9facc90f0fe8d5630b07",
    "long_history": "5f293bff07387cb388a667c5273d2d305015c27058cf07f38b4acf167a8f632f",
    "large": "55451cf7991c40ca0678b758705d1d7a7c71f3dc9e51953651846d8aadfefe36",
}


def _update(h: hashlib._Hash, name: str, x: object, exact: bool) -> None:
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    if isinstance(x, (float, int)):
        x = np.asarray(x, np.float64)
    assert isinstance(x, np.ndarray), (name, type(x))
    h.update(f"{name}:{x.dtype}:{x.shape};".encode())
    if x.dtype.kind == "f" and not exact:
        x = np.round(x.astype(np.float64), 6) + 0.0  # + 0.0: -0.0 and 0.0 hash alike
    h.update(np.ascontiguousarray(x).tobytes())


def world_digest(preset: str, exact: bool = False) -> str:
    """Digest of the shrunk ``preset`` world: entities, calibrated gains, event log, samples."""
    world = World(WorldSpec.from_preset(preset, SHRINK))
    log = world.generate_all()
    h = hashlib.sha256()
    for f in dataclasses.fields(world.population):
        _update(h, f"population.{f.name}", getattr(world.population, f.name), exact)
    for name, value in dataclasses.asdict(world.gains).items():
        _update(h, f"gains.{name}", value, exact)
    for name in ("item_latent", "log_popularity"):
        _update(h, name, getattr(world, name), exact)
    for name in ("alpha", "rho"):
        _update(h, name, getattr(world.kernel, name), exact)
    for name in ("theme", "stickiness"):
        _update(h, f"content.{name}", getattr(world.content, name), exact)
    for name in log._EVENT_COLUMNS + log._CONVERSION_COLUMNS:
        _update(h, f"log.{name}", getattr(log, name), exact)
    for f in dataclasses.fields(log.onboarding):
        _update(h, f"onboarding.{f.name}", getattr(log.onboarding, f.name), exact)
    days = range(2, world.spec.num_days)
    for rows, max_history in (("exposures", 8), ("conversions", None)):
        samples = WorldSamples(world, log, rows, days, None, max_history)
        index = np.arange(len(samples))
        batch = samples.batch(index, privileged=True)
        for name in ("dense", "sparse"):
            _update(h, f"{rows}.{name}", getattr(batch, name), exact)
        for group in ("labels", "extras"):
            for key, value in sorted(getattr(batch, group).items()):
                _update(h, f"{rows}.{group}.{key}", value, exact)
        for key, jagged in (("history", batch.history), ("onboarding", batch.privileged["onboarding"])):
            for f in dataclasses.fields(jagged):
                _update(h, f"{rows}.{key}.{f.name}", getattr(jagged, f.name), exact)
        hist = batch.history
        item = batch.sparse[:, 4].numpy()
        v = hist.values.numpy()
        sums = world.history_sums(
            v[:, 0], v[:, 1], hist.actions.numpy(), hist.timestamps.numpy(), hist.offsets.numpy(),
            item, batch.extras["timestamp"].numpy(),
        )  # fmt: skip
        _update(h, f"{rows}.history_sums", np.stack(sums), exact)
    return h.hexdigest()


@pytest.mark.parametrize("preset", sorted(WORLD_PRESETS))
def test_world_output_is_frozen(preset: str) -> None:
    assert preset in DIGESTS, f"preset {preset!r} has no frozen digest: refresh DIGESTS (module docstring)"
    assert world_digest(preset) == DIGESTS[preset], (
        f"the {preset!r} world's data changed; if that is meant, refresh DIGESTS (module docstring)"
    )


if __name__ == "__main__":
    exact = "--exact" in sys.argv[1:]
    print("DIGESTS = {")
    for name in WORLD_PRESETS:
        print(f'    "{name}": "{world_digest(name, exact)}",')
    print("}")
