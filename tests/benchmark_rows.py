"""Small stand-ins for the shipped benchmarks' Hub datasets, in each dataset's own columns.

Every row here was written for these tests (none is taken from a benchmark). ``save_mirror``
writes them as ``DatasetDict.save_to_disk`` folders laid out as ``HARNESS_DATASETS`` reads
them: ``<dataset>/<config>/`` (``default`` for a dataset without configurations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Rows = list[dict[str, Any]]

BOOLQ: Rows = [
    {"paragraph": "한강은 서울을 가로질러 서해로 흘러간다.", "question": "한강은 서울을 지나는가?",
     "label": 1},
    {"paragraph": "고양이는 대부분 물을 싫어한다.", "question": "고양이는 물을 좋아하는가?",
     "label": 0},
    {"paragraph": "제주도는 한국에서 가장 큰 섬이다.", "question": "제주도는 섬인가?", "label": 1},
]

COPA: Rows = [
    {"premise": "바닥이 미끄러웠다.", "question": "결과", "alternative_1": "그는 넘어졌다.",
     "alternative_2": "그는 노래를 불렀다.", "label": 0},
    {"premise": "아이가 울음을 터뜨렸다.", "question": "원인",
     "alternative_1": "아이는 사탕을 받았다.", "alternative_2": "아이는 장난감을 잃어버렸다.",
     "label": 1},
    {"premise": "창문을 열어 두었다.", "question": "결과", "alternative_1": "방이 시원해졌다.",
     "alternative_2": "책이 두꺼워졌다.", "label": 0},
    {"premise": "그녀는 우산을 챙겼다.", "question": "원인", "alternative_1": "하늘이 맑았다.",
     "alternative_2": "비가 올 것 같았다.", "label": 1},
]

HELLASWAG: Rows = [
    {"context": "그는 냄비에 물을 붓고 불을 켰다.", "ending_1": "물이 끓기 시작했다.",
     "ending_2": "냄비가 노래했다.", "ending_3": "창문이 닫혔다.", "ending_4": "고양이가 잤다.",
     "label": 0},
    {"context": "아이들이 운동장에 모였다.", "ending_1": "바다가 말랐다.",
     "ending_2": "선생님이 호루라기를 불었다.", "ending_3": "책상이 날았다.",
     "ending_4": "달이 떴다.", "label": 1},
]

SENTINEG: Rows = [
    {"sentence": "이 식당은 전혀 맛있지 않았다.", "label": 0},
    {"sentence": "배송이 느리지 않아서 좋았다.", "label": 1},
    {"sentence": "다시는 사지 않을 물건이다.", "label": 0},
]

WIC: Rows = [
    {"word": "배", "context_1": "배가 아파서 병원에 갔다.", "context_2": "배를 타고 섬에 갔다.",
     "label": 0},
    {"word": "눈", "context_1": "밤새 눈이 내렸다.", "context_2": "아침에 눈이 쌓여 있었다.",
     "label": 1},
]

KMMLU: Rows = [
    {"question": "조선을 세운 사람은?", "answer": 2, "A": "왕건", "B": "이성계", "C": "주몽",
     "D": "온조", "Category": "Korean-History", "Human Accuracy": 0.8},
    {"question": "훈민정음을 만든 왕은?", "answer": 1, "A": "세종", "B": "태종", "C": "정조",
     "D": "영조", "Category": "Korean-History", "Human Accuracy": 0.9},
]

HAERAE: Rows = [
    {"query": "다음 중 '가랑비'의 뜻으로 알맞은 것은?\n(A) 가늘게 내리는 비 (B) 세찬 비 "
              "(C) 눈 섞인 비 (D) 밤에 오는 비 (E) 소나기\n정답:", "answer": "(A)"},
    {"query": "한글을 반포한 해는?\n(A) 1392년 (B) 1446년 (C) 1592년 (D) 1910년 "
              "(E) 1945년\n정답:", "answer": "(B)"},
]

KORQUAD: Rows = [
    {"id": "q1", "title": "한글", "context": "한글은 세종이 만든 글자로, 1446년에 반포되었다.",
     "question": "한글을 만든 사람은?",
     "answers": {"text": ["세종", "세종대왕"], "answer_start": [4, 4]}},
    {"id": "q2", "title": "서울", "context": "서울은 한국의 수도이며 한강이 흐른다.",
     "question": "서울에 흐르는 강은?", "answers": {"text": ["한강"], "answer_start": [13]}},
]

NSMC: Rows = [
    {"id": "1", "document": "배우들 연기가 정말 좋았다", "label": 1},
    {"id": "2", "document": "시간이 아까운 영화", "label": 0},
]

YNAT: Rows = [
    {"guid": "ynat-1", "title": "국가대표팀 결승 진출 확정", "label": 5,
     "url": "https://example.invalid/1", "date": "2020.01.01. 오전 9:00"},
    {"guid": "ynat-2", "title": "반도체 수출 석 달 만에 늘어", "label": 1,
     "url": "https://example.invalid/2", "date": "2020.01.02. 오후 3:00"},
]

# (dataset, config or "default") -> split -> rows
MIRROR: dict[tuple[str, str], dict[str, Rows]] = {
    ("skt/kobest_v1", "boolq"): {"test": BOOLQ, "train": BOOLQ},
    ("skt/kobest_v1", "copa"): {"test": COPA, "train": COPA},
    ("skt/kobest_v1", "hellaswag"): {"test": HELLASWAG, "train": HELLASWAG},
    ("skt/kobest_v1", "sentineg"): {"test": SENTINEG, "train": SENTINEG},
    ("skt/kobest_v1", "wic"): {"test": WIC, "train": WIC},
    **{("HAERAE-HUB/KMMLU", subject): {"test": KMMLU, "dev": KMMLU}
       for subject in ("Korean-History", "Computer-Science", "Law")},
    **{("HAERAE-HUB/HAE_RAE_BENCH", config): {"test": HAERAE}
       for config in ("general_knowledge", "history", "loan_words", "rare_words",
                      "standard_nomenclature")},
    ("KorQuAD/squad_kor_v1", "default"): {"validation": KORQUAD, "train": KORQUAD},
    ("e9t/nsmc", "default"): {"test": NSMC, "train": NSMC},
    ("klue/klue", "ynat"): {"validation": YNAT, "train": YNAT},
}


def save_mirror(root: Path) -> Path:
    """Write every stand-in under ``root`` as HARNESS_DATASETS lays them out."""
    from datasets import Dataset, DatasetDict

    for (name, config), splits in MIRROR.items():
        folder = root.joinpath(*name.split("/"), config)
        DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()}
                    ).save_to_disk(str(folder))
    return root
