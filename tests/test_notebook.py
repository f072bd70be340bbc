"""examples/lessons.ipynb, executed in a real Jupyter kernel on a tiny model, so that the
lessons can never drift from the API; and the notebook as committed, checked for what a
reader on the web sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "lessons.ipynb"


def code_cells(notebook: dict) -> list[dict]:
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def tables(cells: list[dict]) -> list[dict]:
    """The cells that show an HTML table (a DataFrame, or a Run's summary)."""
    return [cell for cell in cells
            if any("<table" in "".join(output.get("data", {}).get("text/html", ""))
                   for output in cell["outputs"])]  # a saved notebook splits text in lines


def test_the_lessons_notebook_runs_on_a_tiny_model(
    tmp_path: Path, hf_long_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    out = tmp_path / "runs"
    monkeypatch.setenv("HARNESS_LESSONS_MODEL", str(hf_long_model_dir))
    monkeypatch.setenv("HARNESS_LESSONS_LIMIT", "2")
    monkeypatch.setenv("HARNESS_LESSONS_OUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the suite's own torch: one thread
    # the kernel's connection file and IPython's profile, kept out of the home folder
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in code_cells(notebook):
        cell["outputs"] = []  # what was committed plays no part
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on an error

    cells = code_cells(notebook)
    assert all(cell["execution_count"] for cell in cells)
    assert len(tables(cells)) >= 20  # a table after every decoding method and every task
    folders = {re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", path.name) for path in out.iterdir()}
    assert {"opening", "emotion", "dialogue", "open_qa", "translation", "chitchat"} <= folders
    assert (out / "chitchat-model" / "finetune.json").exists()
    shown = json.dumps([cell["outputs"] for cell in cells], ensure_ascii=False)
    assert "Warning" not in shown  # e.g. tqdm's about widgets, which names a file of its own
    shown_run = next(cell for cell in cells if cell["source"] == "after")["outputs"][-1]["data"]
    assert "<svg" in shown_run["text/html"] and "chitchat" in shown_run["text/plain"]
    # part 4: ratings typed in Python, and the judge's column beside the metrics
    dialogues = sorted(path for path in out.iterdir() if path.name.startswith("dialogue-"))
    assert len(dialogues) == 2 and (dialogues[0] / "ratings.json").exists()
    assert (dialogues[1] / "judge.jsonl").exists()
    judged = cells[-1]["outputs"][-1]["data"]["text/html"]
    assert "judge" in judged and "top_k_top_p_3" in judged


def test_the_committed_notebook_shows_a_real_run_with_relative_paths() -> None:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    cells = code_cells(notebook)
    assert len(tables(cells)) >= 20, "run all its cells in Jupyter and save before committing"
    counts = [cell["execution_count"] for cell in cells]
    assert counts == list(range(1, len(cells) + 1))  # top to bottom, in one kernel
    outputs = json.dumps([cell["outputs"] for cell in cells], ensure_ascii=False)
    assert '"output_type": "error"' not in outputs
    assert "harness model default" in outputs  # the default model, not a test's
    assert not re.search(r"(?<![\w.])/(tmp|work|root|home|Users)/", outputs)
