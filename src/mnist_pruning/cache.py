"""A content-keyed on-disk cache of arrays (embeddings, k-means fits).

An entry's key is a hash of everything that determines it, so a changed input is a new entry,
never a stale one. Writes are atomic (temporary file + rename) and guarded by a file lock, so
parallel jobs asking for the same entry compute it once; an unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


def array_digest(x: np.ndarray) -> str:
    """A digest of an array's contents, shape and dtype: keys work derived from it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.dtype}{x.shape}".encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def key_of(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Cache:
    """`get(namespace, parts, compute)` returns the cached arrays or computes and stores them."""

    def __init__(self, root: str | Path, enabled: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.enabled = enabled
        self.computed = 0  # entries computed by this process (a test counts fits with it)
        self._memory: dict[str, Arrays] = {}

    def path(self, namespace: str, parts: dict[str, Any]) -> Path:
        return self.root / namespace / f"{key_of(parts)}.npz"

    def get(self, namespace: str, parts: dict[str, Any], compute: Callable[[], Arrays]) -> Arrays:
        if not self.enabled:
            self.computed += 1
            return compute()
        path = self.path(namespace, parts)
        if str(path) in self._memory:
            return self._memory[str(path)]
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            arrays = self._load(path)
            if arrays is None:
                arrays = compute()
                self.computed += 1
                self._store(path, arrays, parts)
        self._memory[str(path)] = arrays
        return arrays

    @staticmethod
    def _load(path: Path) -> Arrays | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files if k != "__parts__"}
        except Exception as e:  # truncated or corrupt: rebuild rather than trust it
            log.warning("cache entry %s is unreadable (%s); rebuilding it", path, e)
            return None

    @staticmethod
    def _store(path: Path, arrays: Arrays, parts: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                meta = np.array(json.dumps(parts, sort_keys=True, default=str))
                np.savez(f, __parts__=meta, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
