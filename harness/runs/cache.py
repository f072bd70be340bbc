"""The result cache: finished generations, keyed by everything that changes them.

A key covers the scope (the model's fingerprint, over its files' contents or its hub
revision rather than its name; the backend's ``identity()``: engine, speed-ups, device,
precision; the harness code that generates, as a digest of its source, and the versions
of torch and transformers), the exact prompt, the full decoding setting, the shared
options (max_new_tokens, stop strings, banned words) and the seed; the value holds every
returned sequence of that request, in order. SQLite in WAL mode lets two runs read and
write the same cache at once.

The cache is an optimisation, never a reason for a run to fail: a database that is
damaged (not a database, cut short, a folder in its place) is set aside beside itself
with a warning and a new one started; one that cannot be written (a read-only folder, a
full disk) is read as long as it can be and written no more, with a warning; where no
cache can be had at all (``HARNESS_CACHE`` names a file), the run goes on without one.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.engines.contract import Generation, Options

# Bump when generation or its records change in a way that old entries would misstate
# (2: keyed sampling, one seed a request). Edits to the generating code change every key
# by themselves (``code_version``).
FORMAT = 2

# The code that decides what a request generates: every module of these packages, found
# by listing them, so a module added or moved there is in the key without a word here.
GENERATING_PACKAGES = ("engines",)

Warn = Callable[[str], None]


def warn(message: str) -> None:
    """One line on stderr, above a progress bar if one is drawn."""
    from tqdm.auto import tqdm

    tqdm.write(f"harness: warning: {message}", file=sys.stderr)


@functools.cache
def code_version() -> str:
    """A digest of the harness's generating code (and FORMAT): a cache filled by another
    version of it is never read."""
    return code_digest(Path(__file__).resolve().parent.parent)


def code_digest(package: Path) -> str:
    """The digest of the generating code of the package laid out at ``package``."""
    from harness.common.version import __version__

    digest = hashlib.sha256(f"{__version__}:{FORMAT}".encode())
    for path in generating_files(package):
        name = path.relative_to(package).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def generating_files(package: Path) -> list[Path]:
    """The source files whose code decides outputs, in a fixed order."""
    found = sorted(p for name in GENERATING_PACKAGES for p in (package / name).rglob("*.py"))
    if not found:  # a package laid out otherwise would key every run alike: never silently
        raise RuntimeError(f"no generating modules under {package}")
    return found


def scope(fingerprint: str | None, identity: dict[str, Any]) -> dict[str, Any]:
    """What besides the request decides its outputs: the model, the backend, the code."""
    libraries = {}
    for name in ("torch", "transformers"):
        try:
            libraries[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            libraries[name] = None
    return {"model": fingerprint, "harness": code_version(), "libraries": libraries,
            **identity}


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


def damaged(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a sound database (rather than unwritable)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return True
    text = str(exc)
    return "not a database" in text or "malformed" in text


def set_aside(path: Path) -> Path:
    """Move a damaged database (and its -wal, -shm files) out of the way; returns where."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    return aside


def open_cache(path: Path, say: Warn = warn) -> ResultCache | None:
    """The cache at ``path``; a damaged one replaced, a read-only one read, or None.

    Every problem is one warning; none is raised.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        file = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), None)
        why = f"{file} is a file" if file is not None else exc.strerror or str(exc)
        say(f"cannot keep the result cache in {path.parent} ({why}); running without it")
        return None
    try:
        return ResultCache(path, say)
    except sqlite3.Error as exc:
        if damaged(exc) or path.is_dir():
            return _replace_damaged(path, exc, say)
        problem = exc
    try:
        cache = ResultCache(path, say, readonly=True)
    except sqlite3.Error:
        say(f"cannot open the result cache {path} ({problem}); running without it")
        return None
    say(f"the result cache {path} cannot be written ({problem}); using what it holds, "
        "storing nothing new")
    return cache


def _replace_damaged(path: Path, exc: sqlite3.Error, say: Warn) -> ResultCache | None:
    what = "a folder" if path.is_dir() else f"damaged ({exc})"
    try:
        aside = set_aside(path)
    except OSError as move:
        say(f"the result cache {path} is {what} and cannot be moved aside "
            f"({move.strerror or move}); running without it")
        return None
    try:
        cache = ResultCache(path, say)
    except sqlite3.Error as again:
        say(f"the result cache {path} was {what}: moved it to {aside.name}, but cannot "
            f"start a new one ({again}); running without it")
        return None
    say(f"the result cache {path} was {what}: moved it to {aside.name} and started a new one")
    return cache


class ResultCache:
    """The SQLite table of finished requests.

    Opening raises sqlite3.Error (``open_cache`` turns that into a warning); reading or
    writing never raises: a failure is one warning, after which the cache is no longer
    read (damaged: it is also set aside) or no longer written.
    """

    def __init__(self, path: Path, say: Warn = warn, readonly: bool = False) -> None:
        self.path = path
        self.say = say
        self.readonly = readonly
        self._db: sqlite3.Connection | None = _connect(path, readonly)
        try:
            if not readonly:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS outputs ("
                    " key TEXT PRIMARY KEY, generations TEXT NOT NULL, created REAL NOT NULL)"
                )
            self._db.execute("SELECT key FROM outputs LIMIT 1").fetchall()
        except sqlite3.Error:
            self._db.close()
            raise

    def get(self, keys: list[str]) -> dict[str, list[Generation]]:
        """The cached generations of whichever of ``keys`` are present."""
        found: dict[str, list[Generation]] = {}
        if self._db is None:
            return found
        try:
            for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, generations FROM outputs WHERE key IN ({marks})", chunk
                )
                for key, value in rows:
                    generations = _generations(value)
                    if generations is not None:
                        found[key] = generations
        except sqlite3.Error as exc:
            self._failed(exc)
            return {}
        return found

    def put(self, items: list[tuple[str, list[Generation]]]) -> None:
        if self._db is None or self.readonly:
            return
        now = time.time()
        rows = [
            (key, json.dumps([asdict(g) for g in gens], ensure_ascii=False), now)
            for key, gens in items
        ]
        try:
            with self._db:  # one transaction per batch
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            self._failed(exc)

    def _failed(self, exc: sqlite3.Error) -> None:
        if damaged(exc):
            self.close()
            try:
                aside = set_aside(self.path)
                where = f"moved it to {aside.name}; the next run starts a new one"
            except OSError:
                where = "delete it to start a new one"
            self.say(f"the result cache {self.path} is damaged ({exc}); {where}. This run "
                     "goes on without it")
        else:
            self.readonly = True
            self.say(f"cannot write the result cache {self.path} ({exc}); this run goes on "
                     "without storing its results there")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if not readonly:
        return sqlite3.connect(path, timeout=60, isolation_level=None)
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60, isolation_level=None)
    try:
        db.execute("SELECT 1 FROM outputs LIMIT 1").fetchall()
        return db
    except sqlite3.Error:
        db.close()
        # a WAL database in a folder where its -shm file cannot be made: read it as a
        # file that nobody changes
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)


def _generations(value: str) -> list[Generation] | None:
    """A stored value, or None when it is not one (an entry damaged in some other way)."""
    try:
        return [Generation(**g) for g in json.loads(value)]
    except (TypeError, ValueError):
        return None
