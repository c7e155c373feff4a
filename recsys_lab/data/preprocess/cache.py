"""The preprocessed cache: one folder per (dataset, input files, preprocessing config).

Layout of ``<cache_dir>/<dataset>/<key>/``::

    manifest.json        written last: format version, config, input fingerprints, split sizes, and
                         every other file of the folder with its size and CRC-32 (checked on opening)
    schema.json          the Schema models are built from
    vocab.parquet        fitted vocabularies (field, id, value, count)
    transforms.json      fitted numeric transforms (means, quantile boundaries, ...)
    bad_rows.json        the bad-row summary (counts per reason, first bad rows)
    <split>/sparse.npy   int32 [N, F]   categorical ids, field-local, 0 = OOV, 1 = missing
    <split>/dense.npy    float32 [N, D] numeric features
    <split>/click.npy    float32 [N]    the label
    <split>/user.npy     int64 [N]      GAUC group ids (when the dataset has users)
    <split>/<label>.npy  float32 [N]    further labels (datasets with several)
    <split>/multi.npy    int32 [N, M, L] multi-valued ids, -1 = padding (datasets with such fields)
    (datasets with histories add their arrays; see the datamodule)

The key hashes the input files' (resolved path, size, mtime) and the preprocessing config, so
a second run reuses the folder and any change of inputs or config builds a new one. A cache is
built in a temporary sibling folder and renamed into place once complete, so an interrupted run
never leaves a folder that looks complete; builders of the same key wait on a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from recsys_lab.data.preprocess.errors import CacheDamagedError, CacheMismatchError, DataError
from recsys_lab.data.schema import Schema

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SCHEMA = "schema.json"
_TMP_PREFIX = ".tmp-"


def fingerprint(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """``(path, size, mtime_ns)`` of each input file."""
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as e:
            raise DataError(f"Cannot read {p}: {e.strerror or e}") from e
        out.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def cache_key(dataset: str, inputs: list[dict[str, Any]], config: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the format version, dataset, input fingerprints and config."""
    payload = json.dumps(
        {"format": FORMAT_VERSION, "dataset": dataset, "inputs": inputs, "config": config},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def is_complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock for building ``folder`` (other processes, e.g. DDP ranks, wait here)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f".{folder.name}.lock"
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; rename it to ``folder`` if the block succeeds,
    delete it otherwise. Leftovers of crashed builds of the same key are removed first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{_TMP_PREFIX}{folder.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)  # callers hold build_lock: nobody else is writing
    tmp = folder.parent / f"{_TMP_PREFIX}{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if not is_complete(tmp):
            raise RuntimeError(f"cache build in {tmp} finished without writing {MANIFEST}")
        if folder.exists():  # built meanwhile by a process that did not take the lock: keep that one
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class NpyWriter:
    """Writes a ``.npy`` file of known shape by appending row chunks (memory: one chunk)."""

    def __init__(self, path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.rows = 0
        self._f: BinaryIO = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self._f,
            {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape},
        )

    def append(self, chunk: np.ndarray) -> None:
        if chunk.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path.name}: chunk of shape {chunk.shape} does not fit {self.shape}")
        self._f.write(np.ascontiguousarray(chunk, dtype=self.dtype).data)
        self.rows += chunk.shape[0]

    def close(self) -> None:
        self._f.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.rows} rows, expected {self.shape[0]}")


def load_array(path: Path) -> np.ndarray:
    """Memory-map a cached ``.npy`` read-only (nothing is loaded until rows are touched)."""
    return np.load(path, mmap_mode="r")


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text())


def _crc32(path: Path, chunk: int = 1 << 24) -> str:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def file_index(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` but the manifest: relative path -> ``{"bytes", "crc32"}``."""
    return {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "crc32": _crc32(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Check that every file the manifest lists exists with its size and CRC-32.

    Raises:
        CacheDamagedError: naming the first damaged file and the command that rebuilds the cache.
    """
    listed: dict[str, dict[str, Any]] | None = manifest.get("files")
    if listed is None:
        log.warning(
            "The cache at %s predates file checksums and cannot be verified; delete it to rebuild", folder
        )
        return
    for name, want in listed.items():
        path = folder / name
        if not path.is_file():
            problem = f"{name} is missing"
        elif path.stat().st_size != want["bytes"]:
            problem = f"{name} has {path.stat().st_size:,} bytes, the manifest says {want['bytes']:,}"
        elif _crc32(path) != want["crc32"]:
            problem = f"{name} does not match its checksum (CRC-32 {want['crc32']} when written)"
        else:
            continue
        raise CacheDamagedError(
            f"The cache at {folder} is damaged: {problem}. Rebuild it from the raw files: "
            f"`rm -rf {folder}`, then run the same command again."
        )


def check_cache(
    folder: Path,
    dataset: str,
    config: dict[str, Any],
    expected_features: Sequence[tuple[str, str]],
) -> tuple[dict[str, Any], Schema]:
    """Read a complete cache's manifest and schema and check them against the config.

    Args:
        expected_features: ``(name, kind)`` of every feature the config asks for, in order.

    Raises:
        CacheMismatchError: the cache was built by another format version or config, or its schema
            or arrays do not match what the config asks for.
    """
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    fix = f"Delete {folder} to rebuild it from the raw files."
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("dataset") != dataset:
        raise CacheMismatchError(
            f"The cache at {folder} has format {manifest.get('format_version')} for dataset "
            f"{manifest.get('dataset')!r}; this code reads format {FORMAT_VERSION} for {dataset!r}. {fix}"
        )
    cached_cfg = json.loads(json.dumps(manifest.get("config"), sort_keys=True, default=str))
    want_cfg = json.loads(json.dumps(config, sort_keys=True, default=str))
    if cached_cfg != want_cfg:
        diff = sorted(k for k in set(cached_cfg) | set(want_cfg) if cached_cfg.get(k) != want_cfg.get(k))
        raise CacheMismatchError(
            f"The cache at {folder} was built with a different preprocessing config (differs in {diff}). {fix}"
        )
    try:
        schema = Schema.load(folder / SCHEMA)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CacheMismatchError(f"The cache at {folder} has no valid {SCHEMA} ({e}). {fix}") from e
    got = [(f.name, f.kind.value) for f in schema.features]
    want = [(n, k) for n, k in expected_features]
    if got != want:
        raise CacheMismatchError(
            f"The schema of the cache at {folder} does not match the config: the config asks for "
            f"{_describe(want)} but the cache has {_describe(got)}. {fix}"
        )
    return manifest, schema


def check_split_arrays(
    folder: Path, split: str, rows: int, schema: Schema, arrays: dict[str, np.ndarray]
) -> None:
    """Check a split's memory-mapped arrays against the schema and the manifest's row count."""
    expect = {"sparse": (rows, schema.num_categorical), "dense": (rows, schema.num_numeric), "click": (rows,)}
    expect.update({label: (rows,) for label in schema.labels})
    if schema.multi_valued and "multi" in arrays:
        expect["multi"] = (rows, schema.num_multi_valued, arrays["multi"].shape[-1])
    for name, shape in expect.items():
        if name in arrays and tuple(arrays[name].shape) != shape:
            raise CacheMismatchError(
                f"The cache at {folder}: {split}/{name}.npy has shape {tuple(arrays[name].shape)}, the schema "
                f"and manifest say {shape}. Delete {folder} to rebuild it."
            )


def _describe(features: Sequence[tuple[str, str]]) -> str:
    kinds: dict[str, int] = {}
    for _, k in features:
        kinds[k] = kinds.get(k, 0) + 1
    names = [n for n, _ in features]
    head = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{len(features)} features ({', '.join(f'{v} {k}' for k, v in kinds.items())}: {head})"
