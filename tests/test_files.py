"""Tests for harness.common.files: regular files only, writes beside and renamed, run locks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness import cli
from harness.common import files
from harness.errors import HarnessError


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes("text,label\n좋아요,기쁨\n".encode())
    assert files.read_regular(path, "data file", 1000) == path.read_bytes()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_link_to_a_device_is_refused_before_reading(tmp_path: Path) -> None:
    link = tmp_path / "data.csv"
    link.symlink_to("/dev/zero")
    with pytest.raises(HarnessError, match="is a device or socket, not a regular file"):
        files.read_regular(link, "data file", 10**6)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    with pytest.raises(HarnessError, match="is a FIFO, not a regular file"):
        files.read_regular(fifo, "data file", 10**6)  # opening it blocking would hang


def test_a_file_above_the_cap_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(HarnessError, match="larger than"):
        files.read_regular(path, "data file", 1000)


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"),
                    reason="needs /dev/zero and FIFOs")
@pytest.mark.parametrize("what", ["zero", "fifo"])
def test_a_task_whose_data_is_not_a_file_is_one_line(write_task, tmp_path, capsys, what) -> None:
    path = write_task()
    (tmp_path / "data.csv").unlink()
    if what == "zero":
        (tmp_path / "data.csv").symlink_to("/dev/zero")
    else:
        os.mkfifo(tmp_path / "data.csv")
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a regular file" in err


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("old page", encoding="utf-8")
    with pytest.raises(OSError), files.replacing(page) as scratch:
        scratch.write_text("half a new pa", encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert page.read_text(encoding="utf-8") == "old page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    files.write_text(page, "새 페이지")
    assert page.read_text(encoding="utf-8") == "새 페이지"


def listing(folder: Path) -> dict[str, str]:
    return {p.name: (p / "f.txt").read_text(encoding="utf-8") for p in folder.iterdir()}


def test_a_new_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with files.new_folder(out, "--out model: cannot write it") as partial:
        (partial / "f.txt").write_text("new", encoding="utf-8")
        assert not out.exists()
    assert listing(tmp_path) == {"model": "new"}

    with pytest.raises(KeyboardInterrupt), files.new_folder(tmp_path / "cut", "x") as partial:
        (partial / "f.txt").write_text("half", encoding="utf-8")
        raise KeyboardInterrupt
    with pytest.raises(HarnessError, match=r"^--out cut: cannot write it \(No space left"):
        with files.new_folder(tmp_path / "cut", "--out cut: cannot write it") as partial:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert listing(tmp_path) == {"model": "new"}  # no partial folder left behind


@pytest.mark.parametrize(("existing", "kept"), [("keep", "old"), ("replace", "new")])
def test_a_new_folder_over_an_existing_one(tmp_path: Path, existing, kept) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "f.txt").write_text("old", encoding="utf-8")
    with files.new_folder(out, "cannot write it", existing) as partial:
        (partial / "f.txt").write_text("new", encoding="utf-8")
    assert listing(tmp_path) == {"model": kept}


def test_a_new_folder_that_fails_over_an_existing_one_leaves_it_as_it_was(
    tmp_path: Path
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "f.txt").write_text("old", encoding="utf-8")
    with pytest.raises(HarnessError, match="cannot write it"):
        with files.new_folder(out, "cannot write it") as partial:  # existing="fail"
            (partial / "f.txt").write_text("new", encoding="utf-8")
    assert listing(tmp_path) == {"model": "old"}


def test_a_locked_run_folder_refuses_a_second_holder(tmp_path: Path) -> None:
    with files.locked(tmp_path, "--resume x"):
        with pytest.raises(HarnessError, match="another harness is writing"):
            with files.locked(tmp_path, "--resume x"):
                pass
    with files.locked(tmp_path, "--resume x"):  # released: free again
        pass


@pytest.mark.skipif(not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"),
                    reason="needs /dev/zero and FIFOs")
@pytest.mark.parametrize("suffix", [".xlsx", ".parquet"])
@pytest.mark.parametrize("what", ["zero", "fifo"])
def test_a_workbook_or_parquet_path_that_is_not_a_file_is_refused(tmp_path, what,
                                                                  suffix) -> None:
    from harness.tasks.data import read_table

    path = tmp_path / f"data{suffix}"
    if what == "zero":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    with pytest.raises(HarnessError, match="not a regular file"):
        read_table(path)  # before openpyxl or pyarrow sees it
