"""Tests for harness.tools.finetune: a tiny model learns a few pairs, saves, reloads, generates."""

from __future__ import annotations

import csv
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import cli
from harness.errors import HarnessError
from harness.tasks.decoding import Setting
from harness.tools import finetune
from harness.tools.finetune import Config, PairFormat

PAIRS = [
    ("오늘 날씨 어때?", "하늘이 맑고 바람이 시원해요."),
    ("내일 비 와?", "우산을 꼭 챙기세요."),
    ("한국의 수도는?", "서울입니다."),
    ("주말에 뭐 해?", "도서관에 가서 책을 읽어요."),
    ("기분이 어때?", "정말 기뻐요."),
    ("저녁 뭐 먹지?", "김치찌개를 끓여 먹어요."),
]


def write_pairs(path: Path, pairs=PAIRS, header=("Q", "A")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(pairs)
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("fixture", ["kogpt2_dir", "hf_model_dir"])
def test_a_tiny_model_learns_the_pairs_and_the_saved_folder_generates(
    request, tmp_path: Path, fixture: str
) -> None:
    from harness.engines.contract import Options
    from harness.engines.hf.backend import HFBackend
    from harness.engines.models import load_model
    from tests.conftest import seeded

    data = write_pairs(tmp_path / "chat.csv")
    out = tmp_path / "tuned"
    cfg = Config(
        data=data, out=out, model=str(request.getfixturevalue(fixture)), epochs=60, lr=3e-3,
        batch_size=2, val_share=0.2, device="cpu",
    )

    result = finetune.finetune(cfg)

    losses = result.record["losses"]
    assert len(losses["train"]) == 60 and len(losses["validation"]) == 61
    assert len(losses["steps"]) == 60 * 3  # 5 pairs to train, 2 a step
    assert losses["train"][-1] < 0.5 * losses["steps"][0], losses["train"]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "finetune.json",
            "loss.svg"} <= names
    assert leftovers(tmp_path) == []
    record = json.loads((out / "finetune.json").read_text(encoding="utf-8"))
    assert record["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (record["data"]["train"], record["data"]["validation"]) == (5, 1)
    assert record["options"]["lr"] == 3e-3 and record["losses"] == losses
    assert record["format"]["task_query"] == "<s>{{ Q }}</s><s>"  # the lessons' format
    svg = ET.fromstring((out / "loss.svg").read_text(encoding="utf-8"))
    assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 3

    loaded = load_model(str(out), "cpu")
    trained = [PAIRS[i - 1] for i in range(1, 7) if i not in record["data"]["validation_rows"]]
    prompts = [f"<s>{q}</s><s>" for q, _ in trained]
    outputs = HFBackend(loaded).generate(
        prompts, Setting("greedy", {}), seeded(prompts), Options(max_new_tokens=24, stop=("</s>",))
    )
    texts = [rows[0].text.strip() for rows in outputs]
    assert all(rows[0].stop_reason == "eos" for rows in outputs), texts  # it learnt to stop
    assert sum(text == a for text, (_, a) in zip(texts, trained)) >= 2, texts


def test_the_query_is_tokenized_as_the_harness_tokenizes_a_prompt(hf_loaded) -> None:
    fmt = PairFormat(hf_loaded.tokenizer, finetune.DEFAULT_QUERY, finetune.DEFAULT_ANSWER)
    ids, n_query = fmt.encode("내일 비 와?", "우산을 꼭 챙기세요.")
    assert not fmt.adds_bos and fmt.task_query("Q") == "<s>{{ Q }}</s><s>"
    assert ids[:n_query] == hf_loaded.tokenizer("<s>내일 비 와?</s><s>")["input_ids"]
    tokens = hf_loaded.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("<s>") == 2


def test_a_tokenizer_that_adds_its_start_token_gets_it_once(hf_model_dir: Path) -> None:
    """Gemma's tokenizer adds <bos> itself: the query leaves the template's first one out."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_model_dir)
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    fmt = PairFormat(tokenizer, finetune.DEFAULT_QUERY, finetune.DEFAULT_ANSWER)
    assert fmt.adds_bos and fmt.task_query("Q") == "{{ Q }}</s><s>"
    ids, n_query = fmt.encode("내일 비 와?", "우산을 꼭 챙기세요.")
    assert ids[:n_query] == tokenizer("내일 비 와?</s><s>")["input_ids"]
    assert ids[0] == bos and ids[1] != bos and ids.count(bos) == 2


def test_labels_leave_out_padding_and_with_answer_only_the_question() -> None:
    examples = [([5, 6, 7, 8, 9], 2), ([5, 6, 7], 1)]
    whole = finetune._batch(examples, pad_id=0, answer_only=False)
    assert whole["labels"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, -100, -100]]
    assert whole["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    answer = finetune._batch(examples, pad_id=0, answer_only=True)
    assert answer["labels"].tolist() == [[-100, -100, 7, 8, 9], [-100, 6, 7, -100, -100]]


def test_an_interrupted_run_leaves_no_model_folder(
    hf_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    calls = []
    real = finetune._batch

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune, "_batch", interrupting)
    data = write_pairs(tmp_path / "chat.csv")
    with pytest.raises(KeyboardInterrupt):
        finetune.finetune(Config(data=data, out=tmp_path / "tuned", model=str(hf_model_dir),
                                 device="cpu", val_share=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.csv"]


def test_a_save_cut_short_leaves_neither_the_folder_nor_half_of_it(
    hf_loaded, tmp_path: Path
) -> None:
    class Failing:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        def save_pretrained(self, folder: Path) -> None:
            (Path(folder) / "tokenizer.json").write_text("{", encoding="utf-8")
            raise self.error

    record = {"losses": {"train": [1.0], "validation": [2.0, 1.5], "steps": [1.2, 0.8]}}
    out = tmp_path / "tuned"
    with pytest.raises(KeyboardInterrupt):
        finetune.save(hf_loaded.model, Failing(KeyboardInterrupt()), record, out, force=False)
    assert not out.exists() and leftovers(tmp_path) == []
    with pytest.raises(HarnessError, match="cannot write the model"):
        finetune.save(hf_loaded.model, Failing(OSError(28, "No space left")), record, out, False)
    assert not out.exists() and leftovers(tmp_path) == []

    # --force replaces an existing folder, once the new one is complete
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    finetune.save(hf_loaded.model, hf_loaded.tokenizer, record, out, force=True)
    assert not (out / "old.txt").exists() and (out / "finetune.json").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("rows", "header", "options", "message"),
    [
        (PAIRS, ("question", "A"), {}, "no column 'Q'.*--question-column"),
        ([], ("Q", "A"), {}, "no items"),
        ([("오늘 날씨 어때?", ""), ("", "서울")], ("Q", "A"), {}, "no question/answer"),
        (PAIRS[:1], ("Q", "A"), {}, "none to train on"),
        (PAIRS, ("Q", "A"), {"max_length": 4096}, "reads at most 128 tokens"),
        (PAIRS, ("Q", "A"), {"query_template": "{{ q }}"}, "unknown variable 'q'"),
        (PAIRS, ("Q", "A"), {"answer_template": "{{ answer }"}, "--answer-template: template"),
        (PAIRS, ("Q", "A"), {"epochs": 0}, "--epochs"),
    ],
)
def test_bad_input_is_one_clear_error(
    hf_model_dir: Path, tmp_path: Path, rows, header, options, message
) -> None:
    data = write_pairs(tmp_path / "chat.csv", rows, header)
    cfg = Config(data=data, out=tmp_path / "tuned", model=str(hf_model_dir), device="cpu",
                 **options)
    with pytest.raises(HarnessError, match=message):
        finetune.finetune(cfg)
    assert not (tmp_path / "tuned").exists()


def test_a_model_that_cannot_be_trained_here_is_one_clear_error(
    hf_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    data = write_pairs(tmp_path / "chat.csv")
    cfg = Config(data=data, out=tmp_path / "tuned", model=str(hf_model_dir), device="cpu")
    monkeypatch.setattr(finetune, "_available_memory", lambda: 1000)
    with pytest.raises(HarnessError, match="training needs about .* GiB more .* free on cpu"):
        finetune.finetune(cfg)
    assert not (tmp_path / "tuned").exists()


def test_an_existing_folder_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    (tmp_path / "tuned").mkdir()
    data = write_pairs(tmp_path / "chat.csv")
    cfg = Config(data=data, out=tmp_path / "tuned", model=str(tmp_path / "no-such-model"))
    with pytest.raises(HarnessError, match="already exists.*--force"):
        finetune.finetune(cfg)


def test_the_command_trains_and_reports_in_one_line_on_a_mistake(
    kogpt2_dir: Path, tmp_path: Path, capsys
) -> None:
    data = write_pairs(tmp_path / "chat.csv")
    out = tmp_path / "tuned"
    argv = ["finetune", "--model", str(kogpt2_dir), "--data", str(data), "--out", str(out),
            "--epochs", "1", "--batch-size", "3", "--device", "cpu"]
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    assert f"saved {out}" in stdout and "<s>{{ Q }}</s><s>" in stdout

    assert cli.main(argv) == 2  # the folder exists now
    assert cli.main([*argv[:4], str(write_pairs(tmp_path / "b.csv", header=("q", "a"))),
                     "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("harness: error:") == 2 and len(err.splitlines()) == 2, err
    assert "already exists" in err and "no column 'Q'" in err


def test_the_loss_chart_draws_every_series_inside_its_frame() -> None:
    from harness.tools.finetune_chart import loss_svg

    svg = ET.fromstring(loss_svg([2.0, 1.0], [3.0, 2.2, 1.9], [2.5, 1.5, 1.2, 0.9]))
    lines = svg.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 3
    for line in lines:
        for point in line.get("points").split():
            x, y = map(float, point.split(","))
            assert 0 <= x <= float(svg.get("width")) and 0 <= y <= float(svg.get("height"))
    assert len(ET.fromstring(loss_svg([1.0], [None], [1.0])).findall(
        "{http://www.w3.org/2000/svg}polyline")) == 2  # no held-out pairs: no validation line


@pytest.mark.parametrize("lr", ["inf", "nan", "-inf", "0"])
def test_a_learning_rate_that_is_not_a_finite_positive_number_is_refused(
    tmp_path: Path, capsys, lr: str
) -> None:
    data = write_pairs(tmp_path / "chat.csv")
    argv = ["finetune", "--model", str(tmp_path / "no-model"), "--data", str(data),
            "--out", str(tmp_path / "tuned"), f"--lr={lr}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lr" in err and "finite number above 0" in err
