"""Files handled with care: what the harness reads is a regular file of bounded size,
what it replaces is written beside and renamed, and a run folder has one writer at a time.

- ``read_regular`` refuses a device (a link to /dev/zero), a FIFO (which would block
  forever) or a socket before reading a byte, and a file above its cap before loading it.
- ``replacing`` / ``write_text`` give a reader either the old file or the new one, never
  half a page: a kill or a full disk leaves the old file as it was; ``new_folder`` does
  the same for a folder (a converted or fine-tuned model).
- ``locked`` holds a lock on a run folder (an OS lock, released when the process dies,
  so a killed run never leaves a stale one).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from harness.errors import HarnessError

MiB = 2**20


def read_regular(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    ``what`` names the file in errors ("data file", "task file"). The file is opened
    without blocking and checked on the open handle, so a FIFO never hangs the harness
    and a file swapped after a check is still the file checked.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise HarnessError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read the {what} ({reason(exc)})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise HarnessError(f"{path}: is a folder, not a {what}")
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise HarnessError(
            f"{path}: is {kind}, not a regular file; the harness reads a {what} only "
            "from an ordinary file"
        )
    with os.fdopen(fd, "rb") as handle:
        too_big = HarnessError(
            f"{path}: the {what} is larger than {limit // MiB} MiB, more than the harness "
            "reads; split it or keep only the rows you evaluate"
        )
        if info.st_size > limit:
            raise too_big
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        try:
            data = handle.read(limit + 1)  # a file that grew after fstat stops here too
        except OSError as exc:
            raise HarnessError(f"{path}: cannot read the {what} ({reason(exc)})") from None
    if len(data) > limit:
        raise too_big
    return data


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A scratch path beside ``path``; written whole, it is renamed over ``path``.

    On any error the scratch file is removed and ``path`` is left as it was.
    """
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield scratch
        os.replace(scratch, path)
    except BaseException:
        try:
            scratch.unlink()
        except OSError:
            pass
        raise


@contextmanager
def new_folder(folder: Path, error: str,
               existing: Literal["fail", "keep", "replace"] = "fail") -> Iterator[Path]:
    """A scratch folder beside ``folder`` (``NAME.partial-<pid>``) to fill; when the block
    ends, it is renamed to ``folder``.

    A write cut short (^C, a full disk, a crash) leaves no folder named ``folder`` that
    looks complete: on any error the scratch folder is removed, and an OSError becomes
    the one line ``{error} ({reason})``. Where ``folder`` exists by the end, ``existing``
    says what happens: "keep" it (another process made the same folder first), "replace"
    it (the old one is put back if the new one cannot take its place), or "fail".
    """
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    try:
        shutil.rmtree(partial, ignore_errors=True)  # an earlier process of this pid's
        partial.mkdir(parents=True)
        yield partial
        _into_place(partial, folder, existing)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):
            raise HarnessError(f"{error} ({reason(exc)})") from None
        raise


def _into_place(partial: Path, folder: Path, existing: str) -> None:
    if existing == "replace" and folder.exists():
        old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
        folder.rename(old)
        try:
            partial.rename(folder)
        except BaseException:
            old.rename(folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        partial.rename(folder)
    except OSError:
        if existing != "keep" or not folder.exists():
            raise
        shutil.rmtree(partial, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) by writing beside it and renaming."""
    with replacing(path) as scratch:
        scratch.write_text(text, encoding="utf-8")


def probe(folder: Path) -> None:
    """Raise OSError unless a file can be created in ``folder`` (it is made if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    test = folder / f".write-test-{os.getpid()}"
    test.write_bytes(b"")
    test.unlink()


def reason(exc: OSError) -> str:
    """An OSError in a few words: 'No space left on device', 'Read-only file system'."""
    return exc.strerror or str(exc) or type(exc).__name__


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


LOCK_NAME = ".lock"


@contextmanager
def locked(folder: Path, what: str) -> Iterator[None]:
    """Hold the lock of a run folder; another holder makes this a one-line error.

    ``what`` starts the error ("--resume reports/x", "rescore reports/x").
    """
    try:
        handle = (folder / LOCK_NAME).open("a+b")  # held for the block
    except OSError as exc:
        raise HarnessError(f"{what}: cannot write in {folder} ({reason(exc)})") from None
    try:
        try:
            _lock(handle.fileno())
        except OSError:
            raise HarnessError(
                f"{what}: another harness is writing {folder} right now; wait for it to "
                "finish (or stop it), then try again"
            ) from None
        try:
            yield
        finally:
            _unlock(handle.fileno())
    finally:
        handle.close()


if sys.platform == "win32":  # pragma: no cover - the project's machines run Linux
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
