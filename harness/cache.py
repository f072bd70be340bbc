"""The result cache: finished generations, keyed by everything that changes them.

A key covers the scope (the model's fingerprint, over its files' contents rather than
its name, and the backend's ``identity()``: engine, speed-ups, device, precision), the
exact prompt, the full decoding setting, the shared options (max_new_tokens, stop
strings, banned words) and the seed; the value holds every returned sequence of that
request, in order. SQLite in WAL mode lets two runs read and write the same cache at once.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .backend import Generation, Options

# Bump when generation or its records change in a way that old entries would misstate
# (2: keyed sampling, one seed a request).
FORMAT = 2


def request_key(
    scope: dict[str, Any], prompt: str, args: dict[str, Any], options: Options,
    seed: int | None,
) -> str:
    payload = {
        "format": FORMAT,
        "scope": scope,
        "prompt": prompt,
        "args": args,
        "max_new_tokens": options.max_new_tokens,
        "stop": list(options.stop),
        "bad_words": list(options.bad_words),
        "seed": seed,
    }
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outputs ("
            " key TEXT PRIMARY KEY, generations TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, keys: list[str]) -> dict[str, list[Generation]]:
        """The cached generations of whichever of ``keys`` are present."""
        found: dict[str, list[Generation]] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, generations FROM outputs WHERE key IN ({marks})", chunk
            )
            for key, value in rows:
                found[key] = [Generation(**g) for g in json.loads(value)]
        return found

    def put(self, items: list[tuple[str, list[Generation]]]) -> None:
        now = time.time()
        rows = [
            (key, json.dumps([asdict(g) for g in gens], ensure_ascii=False), now)
            for key, gens in items
        ]
        with self._db:  # one transaction per batch
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()
