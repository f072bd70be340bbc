"""Scores that mean in Korean what Korean papers mean: BLEU's tokenizer by the references'
language with sacrebleu's signature, KorQuAD 1.0's EM and F1, distinct-n on morphemes, the
Hangul share and the wrong-language check, and NFKC wherever texts are compared."""

from __future__ import annotations

import csv
import json
import math
import unicodedata

import pytest
import sacrebleu

from harness.errors import HarnessError
from harness.runs import pipeline
from harness.scoring import corpus, metrics
from harness.scoring.summary import Summary
from harness.scoring.textscores import (
    distinct_n,
    hangul_share,
    korquad_exact,
    korquad_f1,
    morphemes,
)
from harness.tasks.spec import load_task_mapping


def record(output: str, reference: str | None, item: int = 0) -> dict:
    return {"item": item, "shots": 0, "setting": "greedy", "seed": None, "sequence": 0,
            "output": output, "references": [reference] if reference is not None else []}


# ---------------------------------------------------------------- BLEU


def test_bleu_on_korean_depends_on_the_tokenizer_and_follows_the_references() -> None:
    rows = [record("가나다라", "가나다마")]
    bleu = metrics.get("bleu")
    # 13a splits at spaces only: one word each, no match at all
    assert metrics.value_of(bleu, rows, metrics.Scope(bleu_tokenize="13a")) == 0.0
    # characters: 1-grams 3/4, 2-grams 2/3, 3-grams 1/2, 4-grams 0/1 -> 100/(2*1) = 50 under
    # exponential smoothing; brevity penalty 1: exp(mean(log 75, log 66.7, log 50, log 50))
    by_hand = math.exp((math.log(75) + math.log(200 / 3) + 2 * math.log(50)) / 4)
    assert by_hand == pytest.approx(59.4604, abs=1e-4)
    assert metrics.value_of(bleu, rows, metrics.Scope(bleu_tokenize="char")) == pytest.approx(
        by_hand)
    # the default follows the references' language
    assert metrics.scope_of("translation", rows).bleu_tokenize == "ko-mecab"
    english = [record("the cat sat", "the cat sat down")]
    assert metrics.scope_of("translation", english).bleu_tokenize == "13a"
    assert metrics.scope_of("translation", rows, bleu_tokenize="char").bleu_tokenize == "char"


def test_ko_mecab_bleu_is_sacrebleu_s() -> None:
    rows = [record("나는 학교에 갔다", "나는 학교에 간다"), record("비가 온다", "비가 왔다", 1)]
    ours = metrics.value_of(metrics.get("bleu"), rows, metrics.Scope(bleu_tokenize="ko-mecab"))
    theirs = sacrebleu.metrics.BLEU(tokenize="ko-mecab").corpus_score(
        ["나는 학교에 갔다", "비가 온다"], [["나는 학교에 간다", "비가 왔다"]]).score
    assert ours == pytest.approx(theirs)


def test_signatures_name_the_tokenizer_and_version() -> None:
    version = sacrebleu.__version__
    assert corpus.bleu_signature("13a") == (
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}")
    assert corpus.bleu_signature("char") == (
        f"nrefs:1|case:mixed|eff:no|tok:char|smooth:exp|version:{version}")
    assert "tok:ko-mecab" in corpus.bleu_signature("ko-mecab")
    assert corpus.chrf_signature() == (
        f"nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:{version}")


TRANSLATION = {"name": "tr", "kind": "translation", "prompt": {"query": "{{ en }} =>"},
               "target": "{{ ko }}", "decoding": {"presets": ["greedy"]},
               "data": [{"en": "I went to school", "ko": "나는 학교에 갔다"},
                        {"en": "It rains", "ko": "비가 온다"}]}


def test_the_signature_goes_to_summary_csv_run_json_and_the_page(tmp_path, fake_backend) -> None:
    task = load_task_mapping(TRANSLATION | {"bleu_tokenize": "char"}, tmp_path / "t.yaml",
                             tmp_path)
    fake_backend.respond = lambda prompt, setting, seed, index: "학교에 갔다"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pipeline.execute(pipeline.prepare(task), fake_backend, run_dir)
    expected = corpus.bleu_signature("char")
    with (run_dir / "summary.csv").open(encoding="utf-8-sig") as handle:
        row = next(csv.DictReader(handle))
    assert row["bleu_signature"] == expected
    assert row["chrf_signature"] == corpus.chrf_signature()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["signatures"] == {"bleu": expected, "chrf": corpus.chrf_signature()}
    assert expected in (run_dir / "index.html").read_text(encoding="utf-8")


def test_a_task_chooses_its_bleu_tokenizer_among_sacrebleu_s(tmp_path) -> None:
    with pytest.raises(HarnessError, match="bleu_tokenize"):
        load_task_mapping(TRANSLATION | {"bleu_tokenize": "kiwi"}, tmp_path / "t.yaml", tmp_path)


# ---------------------------------------------------------------- KorQuAD 1.0


def test_korquad_official_em_and_character_f1() -> None:
    # quotes and brackets become spaces, ASCII punctuation goes, case folds
    assert korquad_exact("《세종》", ["세종"]) == 1.0
    assert korquad_exact("세종.", ["세종"]) == 1.0
    assert korquad_exact("세종。", ["세종"]) == 0.0  # an ideographic full stop is kept
    # 세종대왕이다 (6 characters) against 세종 (2): 2 in common, P 2/6, R 1, F1 = 0.5
    assert korquad_f1("세종대왕이다", ["세종"]) == pytest.approx(0.5)
    # spaces are not characters: "세종 대왕" against "세종대왕" is a full match
    assert korquad_f1("세종 대왕", ["한글", "세종대왕"]) == pytest.approx(1.0)
    assert korquad_f1("", ["세종"]) == 0.0


# ---------------------------------------------------------------- distinct-n on morphemes


def test_distinct_on_morphemes_sees_the_shared_endings() -> None:
    texts = ["나는 갔다", "너는 갔다"]
    assert morphemes("나는 갔다") == ["나", "는", "가", "었", "다"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 4)  # words: 나는, 갔다, 너는, 갔다
    # morphemes: 나 는 가 었 다 / 너 는 가 었 다 -> 6 distinct of 10
    assert distinct_n(texts, 1, morphemes) == pytest.approx(0.6)
    rows = [record(t, None, i) for i, t in enumerate(texts)]
    assert metrics.value_of(metrics.get("distinct_1_morph"), rows, metrics.Scope()) == (
        pytest.approx(0.6))
    assert metrics.get("distinct_2_morph").heading == "distinct-2 (morphemes)"


def test_morpheme_metrics_are_a_choice_and_in_the_summary_when_chosen() -> None:
    rows = [record("나는 갔다", None, 0), record("너는 갔다", None, 1)]
    assert "distinct_1_morph" not in Summary("generation", rows).columns
    chosen = Summary("generation", rows, chosen=["distinct_1_morph"])
    assert chosen.columns[0] == "distinct_1_morph"
    assert chosen.estimate(("greedy", 0), metrics.get("distinct_1_morph"))[0] == (
        pytest.approx(0.6))


# ---------------------------------------------------------------- language


def test_hangul_share_counts_letters_only() -> None:
    assert hangul_share("안녕 hello") == pytest.approx(2 / 7)
    assert hangul_share("서울, 2024년!") == 1.0  # digits and punctuation are not letters
    assert hangul_share("123!") is None
    assert hangul_share(unicodedata.normalize("NFD", "한국어")) == 1.0  # jamo composed first
    assert hangul_share("東京です") == 0.0


def test_wrong_language_where_korean_is_expected() -> None:
    rows = [record("서울입니다", "서울", 0), record("It is Seoul", "서울", 1),
            record("1234", "서울", 2), record("首尔", "서울", 3)]
    summary = Summary("qa", rows)
    key = ("greedy", 0)
    # answers with letters: 서울입니다 (Korean), It is Seoul and 首尔 (not): 2 of 3
    assert summary.estimate(key, metrics.get("wrong_language"))[0] == pytest.approx(2 / 3)
    assert summary.estimate(key, metrics.get("hangul"))[0] == pytest.approx(1 / 3)
    # English references: no language check unless the task says Korean
    english = [record("Seoul", "Seoul"), record("서울", "Seoul", 1)]
    assert "wrong_language" not in Summary("qa", english).columns
    told = Summary("qa", english, language="ko")
    assert told.estimate(key, metrics.get("wrong_language"))[0] == pytest.approx(0.5)


# ---------------------------------------------------------------- NFKC everywhere


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_labels_typed_in_decomposed_hangul_still_match(tmp_path, fake_backend) -> None:
    assert nfd("긍정") != "긍정"  # the same word, stored as jamo
    fields = {"name": "nfd", "kind": "classification", "labels": [nfd("긍정"), nfd("부정")],
              "prompt": {"query": "{{ text }}"}, "target": "{{ label }}",
              "decoding": {"presets": ["greedy"]},
              "data": [{"text": "좋다", "label": "긍정"}, {"text": "싫다", "label": "부정"},
                       {"text": "별로", "label": nfd("부정")}]}
    task = load_task_mapping(fields, tmp_path / "t.yaml", tmp_path)
    answers = {"좋다": "긍정입니다", "싫다": nfd("부정"), "별로": "긍정"}
    fake_backend.respond = lambda prompt, setting, seed, index: answers[prompt]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    records = sorted(pipeline.execute(pipeline.prepare(task), fake_backend, run_dir),
                     key=lambda r: r["item"])
    assert [r["correct"] for r in records] == [1.0, 1.0, 0.0]
    summary = Summary("classification", records, fields["labels"])
    assert summary.scope.labels == tuple(fields["labels"])  # no label counted twice
    # gold 긍 부 부, answered 긍 부 긍: F1 of 긍 = 2/3, of 부 = 2/3
    assert summary.estimate(("greedy", 0), metrics.get("macro_f1"))[0] == pytest.approx(2 / 3)


def test_references_in_decomposed_hangul_score_as_composed() -> None:
    assert metrics.score_sample("qa", "세종대왕", [nfd("세종대왕")], None)["exact_match"] == 1.0
    rows = [record("나는 학교에 갔다", nfd("나는 학교에 갔다"))]
    assert metrics.value_of(metrics.get("bleu"), rows,
                            metrics.Scope(bleu_tokenize="char")) == pytest.approx(100.0)
    assert korquad_exact("세종", [nfd("세종")]) == 1.0
