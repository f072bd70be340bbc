"""The type checker: mypy, as pyproject.toml's [tool.mypy] configures it, finds no error
in the package, where the registry has it check every engine class against the backend
contract, nor in the fake backend the tests put in an engine's place (below).

Its cache (.mypy_cache, git-ignored) makes a second run take seconds; the first reads
torch's and transformers' own type information too, about half a minute here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).relative_to(ROOT).as_posix()

if TYPE_CHECKING:
    from harness.engines.contract import Backend
    from tests.conftest import FakeBackend

    # What the registry does for the real engines (harness/engines/registry.py).
    _FAKE_IS_AN_ENGINE: type[Backend] = FakeBackend


def mypy(*files: str) -> tuple[int, str]:
    """mypy over ``files`` from the repository's root: (exit status, its report)."""
    from mypy import api

    out, err, status = api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
        *files,
    ])
    return status, out + err


def test_the_package_type_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    status, report = mypy("harness", THIS)
    assert status == 0, report


def test_an_engine_class_that_breaks_the_contract_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The transformers backend's module, copied with rank_labels misnamed and checked as
    the registry checks it: mypy names the class and the method it lacks."""
    monkeypatch.chdir(ROOT)
    text = (ROOT / "harness" / "engines" / "hf" / "backend.py").read_text(encoding="utf-8")
    assert "    def rank_labels(self, prompts" in text
    broken = tmp_path / "broken_backend.py"
    broken.write_text(
        text.replace("    def rank_labels(self, prompts", "    def rank_labelz(self, prompts")
        + "\n\nfrom harness.engines.contract import Backend as _Backend\n\n\n"
        + "def _loaded(hf: HFBackend) -> _Backend:\n    return hf\n",
        encoding="utf-8",
    )
    status, report = mypy(str(broken))
    assert status == 1, report
    assert '"HFBackend" is missing following "Backend" protocol member' in report, report
    assert "rank_labels" in report, report
