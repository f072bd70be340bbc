"""Shared fixtures: tiny real models built on the spot, a fake backend, task files.

Nothing here downloads: the models are 2-layer GPT-2s with random weights and a
tokenizer trained on the Korean sentences below. Every test runs with HARNESS_CACHE
pointing into a temporary folder, so the user's cache is never written.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from harness.engines.contract import ModelInfo

# Set before transformers is first imported (harness imports it lazily, tests too).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

# The cache the user (or CI) set, kept for the one test that must use the real cache.
USER_CACHE = os.environ.get("HARNESS_CACHE")

KOREAN_SENTENCES = [
    "오늘은 하늘이 맑고 바람이 시원해서 산책하기 좋은 날이에요.",
    "내일 오후부터 비가 온다고 하니 우산을 꼭 챙기세요.",
    "친구가 제 생일을 기억하고 깜짝 파티를 열어 줘서 정말 기뻤어요.",
    "내일 면접인데 실수할까 봐 잠이 안 와요.",
    "수리비를 다 냈는데 또 고장 나서 정말 화가 나요.",
    "키우던 강아지가 멀리 떠나서 너무 슬퍼요.",
    "이 책은 모두 열두 개의 장으로 구성되어 있습니다.",
    "할아버지의 낡은 자전거는 창고 구석에 있었다.",
    "지수는 이사 온 첫날 밤 오래된 열쇠를 발견했다.",
    "마지막 버스를 놓친 민호는 산길을 걸어 집으로 향했다.",
    "일본의 수도는 도쿄입니다.",
    "프랑스의 수도는 파리입니다.",
    "한국의 수도는 서울입니다.",
    "물의 화학식은 무엇인가요?",
    "일 년은 열두 달입니다.",
    "일주일은 칠 일입니다.",
    "고양이가 창가에서 햇볕을 쬐며 잠을 잔다.",
    "강아지가 공원에서 신나게 뛰어논다.",
    "우리는 주말마다 도서관에 가서 책을 읽는다.",
    "어머니께서 맛있는 김치찌개를 끓여 주셨다.",
    "비가 그치지 않던 어느 가을밤 편지 한 통이 도착했다.",
    "감정: 기쁨",
    "감정: 슬픔",
    "감정: 분노",
    "문장: 시험에 합격해서 너무 기뻐요.",
    "질문: 한국의 수도는 어디인가요?",
    "답: 서울",
    "A: 너 이번 주말에 뭐 해?",
    "B: 아직 별 계획 없어. 왜?",
    "A: 새로 생긴 카페 같이 가 볼래?",
    # Some English too, as a real Korean vocabulary has: transformers' stop-string matcher
    # probes the vocabulary with the letters "abcdef", and without them cannot be built
    # (answers would still be cut, but generation would not end at a stop string).
    "Translate Korean to English.",
    "The sky is clear and the breeze is cool today.",
    "It was cold all week, so I wore a thick coat.",
    "There was thick fog this morning, so it was hard to see ahead.",
]
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"]


# ---------------------------------------------------------------- environment


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point the harness cache (sha256 memo, converted models) at a temporary folder."""
    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))
    # matplotlib (the reports' charts) keeps its font cache here, not in the home folder
    os.environ.setdefault("MPLCONFIGDIR", str(tmp_path_factory.mktemp("matplotlib")))
    yield
    if USER_CACHE is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = USER_CACHE


@pytest.fixture
def real_harness_cache(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own cache, for the one test that converts the default model once."""
    if USER_CACHE is None:
        monkeypatch.delenv("HARNESS_CACHE", raising=False)
    else:
        monkeypatch.setenv("HARNESS_CACHE", USER_CACHE)
    from harness.engines.models import cache_root

    return cache_root()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The tiny models gain nothing from a second thread, and on a busy 2-core machine
    threads that spin waiting for each other made generation ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- tiny real models


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A SentencePiece-BPE tokenizer trained on a few Korean sentences (ids 0-3 special)."""
    from tokenizers import SentencePieceBPETokenizer

    tokenizer = SentencePieceBPETokenizer()
    tokenizer.train_from_iterator(
        KOREAN_SENTENCES, vocab_size=400, min_frequency=1, special_tokens=SPECIALS
    )
    return tokenizer


def _tiny_gpt2(vocab_size: int, seed: int, n_positions: int = 128) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    # initializer_range 0.2 (not GPT-2's 0.02): with tied embeddings a near-zero network
    # only repeats the last token; larger weights give varied, well-separated choices.
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=64, n_layer=2, n_positions=n_positions, n_head=1,
        initializer_range=0.2,
        bos_token_id=SPECIALS.index("<s>"), eos_token_id=SPECIALS.index("</s>"),
        pad_token_id=SPECIALS.index("<pad>"),
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def kogpt2_dir(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> Path:
    """The KoGPT-2 lessons' layout: vocab.json + merges.txt + pytorch_model.bin only."""
    import torch

    folder = tmp_path_factory.mktemp("kogpt2")
    bpe_tokenizer.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    model = _tiny_gpt2(len(vocab), seed=1)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> Path:
    """A Hugging Face model folder (config.json, safetensors, tokenizer.json)."""
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf-model")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe_tokenizer, bos_token="<s>", eos_token="</s>",
        pad_token="<pad>", unk_token="<unk>",
    )
    model = _tiny_gpt2(len(tokenizer), seed=2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_long_model_dir(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer) -> Path:
    """As hf_model_dir, reading 1,024 positions: room for the shipped tasks' few-shot
    prompts, which the tiny tokenizer cuts into many pieces."""
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf-long-model")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe_tokenizer, bos_token="<s>", eos_token="</s>",
        pad_token="<pad>", unk_token="<unk>",
    )
    _tiny_gpt2(len(tokenizer), seed=3, n_positions=1024).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_loaded(hf_model_dir: Path):
    from harness.engines.models import load_model

    return load_model(str(hf_model_dir), "cpu")


@pytest.fixture(scope="session")
def kogpt2_loaded(kogpt2_dir: Path):
    from harness.engines.models import load_model

    return load_model(str(kogpt2_dir), "cpu")


# ---------------------------------------------------------------- a fake backend


class FakeBackend:
    """Implements harness.engines.contract.Backend without a model.

    Every generate() call is recorded in ``calls`` as (prompts, setting name, seeds: one
    a prompt), and its Options in ``options``.
    Answers come from ``enqueue``d texts first, else from ``respond(prompt, setting,
    seed, index)`` (seed: the prompt's own), which by default echoes where the answer
    came from.
    """

    name = "fake"
    INFO: ModelInfo = {"name": "fake", "type": "fake", "device": "cpu", "dtype": "float32",
                       "fingerprint": "0" * 64, "load_s": 1.23}

    @classmethod
    def available(cls) -> str | None:
        return None

    @classmethod
    def prefers(cls, device: str) -> bool:
        return False

    @classmethod
    def refusal(cls, setting: Any, options: Any) -> str | None:
        return None

    @classmethod
    def open(cls, model: str, *, device: str = "auto", fast: bool = True,
             parallel: Any = None) -> FakeBackend:
        return cls()

    def __init__(self, rows: int = 8) -> None:
        self.rows = rows
        self.calls: list[tuple[list[str], str, list[int | None]]] = []
        self.options: list[Any] = []  # the Options of each call
        self.queue: list[Any] = []
        self.respond: Callable[..., Any] = lambda prompt, setting, seed, index: (
            f"{setting.name}/{seed}/{index}"
        )
        # rank_labels (scoring: likelihood): each label's log-probability after a prompt
        self.ranked: list[tuple[list[str], list[str]]] = []
        self.label_logprob: Callable[[str, str], float] = lambda prompt, label: -float(len(label))
        self.info = self.INFO.copy()
        self.closed = False

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name}

    def describe(self) -> ModelInfo:
        return self.info.copy()

    def close(self) -> None:
        self.closed = True

    def enqueue(self, *answers: Any) -> None:
        self.queue.extend(answers)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text) for text in texts]

    def batch_rows(self, setting: Any) -> int:
        return max(1, self.rows // setting.rows_per_prompt)

    def rank_labels(self, prompts: list[str], labels: list[str]) -> list[list[Any]]:
        from harness.engines.contract import LabelScore

        self.ranked.append((list(prompts), list(labels)))
        return [[LabelScore(label, self.label_logprob(prompt, label), 1) for label in labels]
                for prompt in prompts]

    def rank_choices(self, prompts: list[str], choices: list[list[str]]) -> list[list[Any]]:
        from harness.engines.contract import LabelScore

        self.ranked.append((list(prompts), [list(c) for c in choices]))
        return [[LabelScore(choice, self.label_logprob(prompt, choice), 1) for choice in own]
                for prompt, own in zip(prompts, choices, strict=True)]

    def generate(self, prompts: list[str], setting: Any, seeds: list[int | None], options: Any):
        from harness.engines.contract import Generation

        assert len(seeds) == len(prompts)
        self.calls.append((list(prompts), setting.name, list(seeds)))
        self.options.append(options)
        out = []
        for prompt, seed in zip(prompts, seeds):
            rows = []
            for index in range(setting.sequences):
                answer = self.queue.pop(0) if self.queue else self.respond(
                    prompt, setting, seed, index
                )
                if isinstance(answer, str):
                    answer = Generation(answer, answer, len(answer), -1.0, "length")
                rows.append(answer)
            out.append(rows)
        return out


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


# ---------------------------------------------------------------- task files

EMOTION_ROWS = [
    {"text": "시험에 합격해서 너무 기뻐요.", "label": "기쁨"},
    {"text": "키우던 강아지가 떠나서 슬퍼요.", "label": "슬픔"},
    {"text": "약속을 또 어겨서 화가 나요.", "label": "분노"},
    {"text": "고양이가 창가에서 잠을 잔다.", "label": "중립"},
]

BASE_TASK: dict[str, Any] = {
    "name": "tiny",
    "description": "작은 감정 분류",
    "kind": "classification",
    "data": "data.csv",
    "shots": [0, 1],
    "prompt": {
        "instruction": "감정을 고르세요.",
        "example": "문장: {{ text }}\n감정: {{ label }}",
        "query": "문장: {{ text }}\n감정:",
    },
    "target": "{{ label }}",
    "labels": ["기쁨", "슬픔", "분노", "중립"],
    "decoding": {"presets": ["greedy"], "max_new_tokens": 4},
}


def write_csv(path: Path, rows: list[dict[str, Any]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def emotion_rows() -> list[dict[str, Any]]:
    """The rows of the data.csv that write_task and write_yaml write by default."""
    return [dict(row) for row in EMOTION_ROWS]


@pytest.fixture
def write_task(tmp_path: Path) -> Callable[..., Path]:
    """write_task(**fields) writes task.yaml (BASE_TASK with ``fields`` replacing its
    top-level keys) and data.csv (``rows``, EMOTION_ROWS by default) under tmp_path."""

    def write(rows: list[dict[str, Any]] | None = None, name: str = "task.yaml",
              **fields: Any) -> Path:
        write_csv(tmp_path / "data.csv", rows or EMOTION_ROWS)
        spec = {**BASE_TASK, **fields}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False),
                        encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str], Path]:
    """write_yaml(text) writes a task file verbatim (for line numbers) beside data.csv."""

    def write(text: str, name: str = "task.yaml") -> Path:
        write_csv(tmp_path / "data.csv", EMOTION_ROWS)
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def seeded(prompts: list[str], seed: int | None = None) -> list[int | None]:
    """The seeds a backend gets for ``prompts``: each prompt's own (None: not sampled)."""
    from harness.engines.contract import request_seed

    return [request_seed(seed, prompt) for prompt in prompts]


# ---------------------------------------------------------------- a failing disk


class _FillingFile:
    """A file open for writing on a disk with ``room`` bytes (or characters) left: a
    write that does not fit writes what fits, then fails as a full disk does."""

    def __init__(self, handle: Any, disk: dict[str, Any]) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        room = self._disk["room"]
        if len(data) > room:
            self._handle.write(data[:room])
            self._disk["room"] = 0
            raise OSError(self._disk["errno"], os.strerror(self._disk["errno"]))
        self._disk["room"] = room - len(data)
        return self._handle.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __iter__(self) -> Any:
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


@pytest.fixture
def broken_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """broken_disk(folder, code, room=0) makes files written under ``folder`` fail with
    OSError(code): ENOSPC/EDQUOT once ``room`` more bytes are written (what fits is
    written, as on a full disk); any other code (EROFS, EACCES) as the file is opened.
    Returns the disk's state; ``disk["room"] = 10**9`` frees space again. Files are
    opened through io.open (pathlib's way), which is what is replaced."""
    import errno
    import io

    real_open = io.open
    disks: list[tuple[Path, dict[str, Any]]] = []

    def opening(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writing = any(flag in mode for flag in "wax+")
        if writing and isinstance(file, (str, os.PathLike)):
            path = Path(os.path.abspath(file))
            for folder, disk in disks:
                if path.is_relative_to(folder):
                    if disk["errno"] not in (errno.ENOSPC, errno.EDQUOT):
                        raise OSError(disk["errno"], os.strerror(disk["errno"]), str(file))
                    return _FillingFile(real_open(file, mode, *args, **kwargs), disk)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", opening)

    def breaking(folder: Path, code: int, room: int = 0) -> dict[str, Any]:
        disk = {"errno": code, "room": room}
        disks.append((Path(os.path.abspath(folder)), disk))
        return disk

    return breaking
