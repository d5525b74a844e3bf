"""The HDF5 cache that prepare writes and the trainer reads.

A cache file holds one group per entry (e.g. `dataset_1/t0003`). Each group carries the fingerprint of
everything it was made from (source files, annotations, the config values that shaped it). Updating a
cache writes a new file next to the old one, copies over every group whose fingerprint is unchanged,
builds the rest, and renames the new file onto the old: an interrupted prepare leaves the old cache
untouched, never a half-written one that looks complete. Where nothing changed (the fingerprint of all entries
and attributes, stored in the file, is the same) the file is not touched at all. One process at a time updates
a cache file (octrack/lock.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from octrack import __version__
from octrack.files import atomic_path, remove_leftovers
from octrack.lock import writing

CACHE_FORMAT = 1
FINGERPRINT = "fingerprint"
CONTENTS = "contents_fingerprint"  # of the whole file: every entry's name, fingerprint and attributes


@dataclass
class CacheEntry:
    """One group of a cache file: its name, what it depends on, and how to build it."""

    name: str
    fingerprint: str
    build: Callable[[h5py.Group], None]
    attributes: dict[str, Any] = field(default_factory=dict)  # cheap values, rewritten on every update


@dataclass
class CacheReport:
    path: Path
    built: int
    reused: int

    def describe(self) -> str:
        return f"{self.path}: {self.built} entries built, {self.reused} reused"


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (paths become strings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def file_fingerprint(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """Identifies file contents cheaply by path, size and modification time."""
    result = []
    for path in paths:
        stat = os.stat(path)
        result.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return result


def update_cache(path: Path, entries: list[CacheEntry], attributes: dict[str, Any], *,
                 rebuild: bool = False, description: str = "prepare") -> CacheReport:
    """Brings the cache file at `path` up to date with `entries` (and drops groups no longer listed)."""
    with writing(path.parent, f"cache-{path.stem}", f"the cache {path.name}"):
        remove_leftovers(path.parent, f".{path.name}.")
        contents = fingerprint(__version__, attributes,
                               [(entry.name, entry.fingerprint, entry.attributes) for entry in entries])
        old = _open_existing(path)
        try:
            if not rebuild and old is not None and old.attrs.get(CONTENTS) == contents:
                return CacheReport(path, 0, len(entries))
            return _rewrite(path, old, entries, {**attributes, CONTENTS: contents}, rebuild, description)
        finally:
            if old is not None:
                old.close()


def _rewrite(path: Path, old: h5py.File | None, entries: list[CacheEntry], attributes: dict[str, Any],
             rebuild: bool, description: str) -> CacheReport:
    built = reused = 0
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as new:
        new.attrs.update({"format": CACHE_FORMAT, "octrack_version": __version__, **attributes})
        for entry in tqdm(entries, desc=description, unit="entry", leave=False):
            if not rebuild and _is_current(old, entry):
                old.copy(old[entry.name], new, name=entry.name)
                reused += 1
            else:
                group = new.create_group(entry.name)
                entry.build(group)
                group.attrs[FINGERPRINT] = entry.fingerprint
                built += 1
            new[entry.name].attrs.update(entry.attributes)
    return CacheReport(path, built, reused)


def _open_existing(path: Path) -> h5py.File | None:
    if not path.exists():
        return None
    try:
        cache = h5py.File(path, "r")
    except OSError:
        return None
    if cache.attrs.get("format") != CACHE_FORMAT:
        cache.close()
        return None
    return cache


def _is_current(old: h5py.File | None, entry: CacheEntry) -> bool:
    return old is not None and entry.name in old and old[entry.name].attrs.get(FINGERPRINT) == entry.fingerprint


def write_array(group: h5py.Group, name: str, data: Any, *, chunks: bool | tuple[int, ...] = True) -> None:
    """A chunked, compressed dataset (lzf: fast to write and read, and it always ships with h5py)."""
    group.create_dataset(name, data=data, chunks=chunks if getattr(data, "size", 1) else None,
                         compression="lzf" if getattr(data, "size", 1) else None)
