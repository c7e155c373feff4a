"""Dataset schema: the ordered features every model is built from.

A model never hard-codes a dataset's fields: it reads them from a :class:`Schema`.
Categorical ids are field-local and index 0 is reserved for missing / out-of-vocabulary values,
so a field with ``vocab_size = V`` uses ids ``0..V-1``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path


class FeatureKind(StrEnum):
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    SEQUENCE = "sequence"
    MULTI_VALUED = "multi_valued"


class FeatureRole(StrEnum):
    USER = "user"
    ITEM = "item"
    CONTEXT = "context"
    NONE = "none"


@dataclass(frozen=True)
class Feature:
    """One feature of a dataset.

    Args:
        name: unique name within the schema.
        kind: categorical (one id per sample), numeric (one float), sequence (event column of
            ``Batch.history``) or multi_valued (a set of ids per sample, ``Batch.multi``; models
            pool its embeddings into one vector per field).
        vocab_size: number of ids including the reserved 0 (categorical, sequence and
            multi_valued).
        role: user / item / context, where a model or metric needs to know (e.g. GAUC groups by
            the user feature).
    """

    name: str
    kind: FeatureKind
    vocab_size: int = 0
    role: FeatureRole = FeatureRole.NONE

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FeatureKind(self.kind))
        object.__setattr__(self, "role", FeatureRole(self.role))
        if not self.name:
            raise ValueError("Feature name must be non-empty")
        if self.kind is not FeatureKind.NUMERIC and self.vocab_size < 2:
            raise ValueError(
                f"Feature {self.name!r} is {self.kind.value} and needs vocab_size >= 2 "
                f"(id 0 is reserved for missing/OOV), got {self.vocab_size}"
            )
        if self.kind is FeatureKind.NUMERIC and self.vocab_size != 0:
            raise ValueError(f"Numeric feature {self.name!r} must not have a vocab_size")


@dataclass(frozen=True)
class Schema:
    """An ordered list of features plus the label names.

    ``Batch.sparse[:, j]`` holds the j-th categorical feature, ``Batch.dense[:, j]`` the j-th numeric
    feature, ``Batch.history.values[:, j]`` the j-th sequence feature and ``Batch.multi[:, j]`` the
    j-th multi-valued feature, each in schema order.
    """

    features: tuple[Feature, ...]
    labels: tuple[str, ...] = ("click",)
    action_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "action_names", tuple(self.action_names))
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Schema has duplicate feature names: {dupes}")
        if "click" not in self.labels:
            raise ValueError(f"Schema labels must include 'click', got {self.labels}")

    # -- views ---------------------------------------------------------------------------------
    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind is FeatureKind.CATEGORICAL)

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind is FeatureKind.NUMERIC)

    @property
    def sequence(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind is FeatureKind.SEQUENCE)

    @property
    def multi_valued(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind is FeatureKind.MULTI_VALUED)

    @property
    def num_multi_valued(self) -> int:
        return len(self.multi_valued)

    def multi_valued_as_categorical(self) -> Schema:
        """The multi-valued features as categorical ones (same names, vocabularies, roles): the
        schema their embedding tables are built from."""
        return Schema(
            tuple(Feature(f.name, FeatureKind.CATEGORICAL, f.vocab_size, f.role) for f in self.multi_valued),
            labels=self.labels,
        )

    @property
    def num_categorical(self) -> int:
        return len(self.categorical)

    @property
    def num_numeric(self) -> int:
        return len(self.numeric)

    @property
    def vocab_sizes(self) -> list[int]:
        """Vocabulary size of each categorical field, in ``Batch.sparse`` column order."""
        return [f.vocab_size for f in self.categorical]

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"No feature named {name!r}; known: {[f.name for f in self.features]}")

    def categorical_index(self, name: str) -> int:
        """Column of feature ``name`` in ``Batch.sparse``."""
        for j, f in enumerate(self.categorical):
            if f.name == name:
                return j
        raise KeyError(f"No categorical feature named {name!r}; known: {[f.name for f in self.categorical]}")

    def user_feature(self) -> Feature | None:
        """The categorical feature with role ``user`` (GAUC's grouping), if any."""
        users = [f for f in self.categorical if f.role is FeatureRole.USER]
        return users[0] if users else None

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "features": [{**asdict(f), "kind": f.kind.value, "role": f.role.value} for f in self.features],
            "labels": list(self.labels),
            "action_names": list(self.action_names),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        return cls(
            features=tuple(Feature(**f) for f in d["features"]),
            labels=tuple(d.get("labels", ("click",))),
            action_names=tuple(d.get("action_names", ())),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.from_dict(json.loads(Path(path).read_text()))
