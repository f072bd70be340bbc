"""Fine-tuning a causal LM on question/answer pairs, as the KoGPT-2 lessons end.

Each pair becomes ``<s>question</s><s>answer</s>`` in the model's own start and end
tokens (templates, configurable), trained with AdamW. Unlike the lessons, padding is
kept out of the loss, a seeded share of the pairs is held out to report a validation
loss before training and after each epoch, and the result is a Hugging Face folder
that ``--model DIR`` loads, written under a temporary name and renamed when complete.

Precision: the model is loaded on the CPU in float32 and trained with float32 weights
everywhere (AdamW's updates at 1e-4 vanish in half precision); on CUDA the forward and
backward passes run under bfloat16 autocast where the GPU supports it. The CPU has no
fast half-precision path (FACTS.md), so it trains in float32 throughout.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.common import files
from harness.common.version import __version__
from harness.errors import HarnessError
from harness.tasks import sandbox
from harness.tasks.data import read_table
from harness.tasks.spec import MAX_SEED

# The lessons' <s>question</s><s>answer</s>, in whatever tokens the model has. A prompt
# for the tuned model is the query part: it ends with the start token of the answer.
DEFAULT_QUERY = "{{ bos }}{{ question }}{{ eos }}{{ bos }}"
DEFAULT_ANSWER = "{{ answer }}{{ eos }}"
_VARIABLES = {"question", "answer", "bos", "eos"}


@dataclass
class Config:
    """The options of ``harness finetune``; the lessons' settings are the defaults."""

    data: Path
    out: Path
    model: str = "default"
    question_column: str = "Q"
    answer_column: str = "A"
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 4
    max_length: int = 128
    seed: int = 42
    val_share: float = 0.1
    answer_only: bool = False  # the lessons trained on the whole pair
    query_template: str = DEFAULT_QUERY
    answer_template: str = DEFAULT_ANSWER
    device: str = "auto"
    force: bool = False


@dataclass
class Result:
    out: Path
    record: dict[str, Any] = field(default_factory=dict)  # finetune.json

    @property
    def task_query(self) -> str:
        """The prompt.query that asks the tuned model as it was trained."""
        return self.record["format"]["task_query"]


def check(cfg: Config) -> None:
    """Refuse bad options before a model loads."""
    if cfg.epochs < 1:
        raise HarnessError("--epochs must be 1 or more")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise HarnessError(f"--lr {cfg.lr}: the learning rate must be a finite number above 0")
    if not 0 <= cfg.seed <= MAX_SEED:
        raise HarnessError(f"--seed {cfg.seed}: seeds are whole numbers from 0 to 2^63 - 1")
    if cfg.batch_size < 1:
        raise HarnessError("--batch-size must be 1 or more")
    if cfg.max_length < 4:
        raise HarnessError("--max-length must be 4 tokens or more")
    if not 0 <= cfg.val_share < 1:
        raise HarnessError("--val-share must be at least 0 and below 1 (0.1 holds out 10%)")
    if cfg.out.exists() and not cfg.force:
        raise HarnessError(f"--out {cfg.out}: already exists; pick another folder or add --force")


# ---------------------------------------------------------------- data


def read_pairs(path: Path, question: str, answer: str) -> tuple[list[tuple[int, str, str]], int]:
    """(row number, question, answer) of every row with both filled, and the rows skipped."""
    rows = read_table(path)
    for number, row in enumerate(rows, start=1):
        missing = [c for c in (question, answer) if c not in row]
        if missing:
            where = "" if number == 1 else f" in row {number}"
            raise HarnessError(
                f"{path}: no column {missing[0]!r}{where} (columns: {', '.join(map(str, row))}); "
                "name them with --question-column and --answer-column"
            )
    pairs = [
        (n, str(row[question]).strip(), str(row[answer]).strip())
        for n, row in enumerate(rows, start=1)
    ]
    kept = [p for p in pairs if p[1] and p[2]]
    if not kept:
        raise HarnessError(
            f"{path}: no question/answer pairs: every row leaves {question} or {answer} empty"
        )
    return kept, len(pairs) - len(kept)


def split(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices for training and for validation: a seeded ``share`` held out (at least one)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = 0 if share == 0 else max(1, round(n * share))
    if n - held < 1:
        raise HarnessError(
            f"{n} pair(s) leave none to train on after holding out {held}; add data or "
            "use --val-share 0"
        )
    return sorted(order[held:]), sorted(order[:held])


class PairFormat:
    """Renders and tokenizes pairs exactly as the harness will tokenize a prompt.

    The query is tokenized with the tokenizer's default special-token handling, as
    ``harness run`` tokenizes prompts; a tokenizer that adds its start token itself
    (Gemma's) gets the query without the template's leading one, so that the text to
    put in a task's ``prompt.query`` is ``task_query`` and nothing starts twice.
    """

    def __init__(self, tokenizer: Any, query_template: str, answer_template: str) -> None:
        self.tokenizer = tokenizer
        if not tokenizer.eos_token:
            raise HarnessError("this model cannot be trained here: its tokenizer has no end token")
        self.bos, self.eos = tokenizer.bos_token or "", tokenizer.eos_token
        self.query_template = _compile("--query-template", query_template, {"answer"})
        self.answer_template = _compile("--answer-template", answer_template, set())
        with_specials = tokenizer("가")["input_ids"]
        bare = tokenizer("가", add_special_tokens=False)["input_ids"]
        bos_id = tokenizer.bos_token_id
        self.adds_bos = bos_id is not None and with_specials[:1] == [bos_id] != bare[:1]

    def query(self, question: str) -> str:
        text = sandbox.render(self.query_template,
                              {"question": question, "bos": self.bos, "eos": self.eos},
                              "--query-template")
        if self.adds_bos and self.bos and text.startswith(self.bos):
            text = text[len(self.bos):]
        return text

    def answer(self, answer: str) -> str:
        return sandbox.render(self.answer_template,
                              {"answer": answer, "bos": self.bos, "eos": self.eos},
                              "--answer-template")

    def task_query(self, column: str) -> str:
        """What a task's prompt.query must be to ask the tuned model as it was trained."""
        return self.query("{{ " + column + " }}")

    def encode(self, question: str, answer: str) -> tuple[list[int], int]:
        """Token ids of the pair, and how many of them are the query (the prompt)."""
        prompt = self.tokenizer(self.query(question))["input_ids"]
        reply = self.tokenizer(self.answer(answer), add_special_tokens=False)["input_ids"]
        return prompt + reply, len(prompt)

    def shown(self, question: str, answer: str) -> str:
        """The pair as the model sees it, special tokens included."""
        return self.tokenizer.decode(self.encode(question, answer)[0])


def _compile(option: str, source: str, forbidden: set[str]) -> sandbox.Compiled:
    template = sandbox.compile_template(source, option)
    unknown = template.variables - (_VARIABLES - forbidden)
    if unknown:
        allowed = ", ".join(sorted(_VARIABLES - forbidden))
        raise HarnessError(f"{option}: unknown variable {sorted(unknown)[0]!r}; use {allowed}")
    return template


# ---------------------------------------------------------------- training

Example = tuple[list[int], int]  # a pair's token ids, and how many of them are the query


def _batch(examples: list[Example], pad_id: int, answer_only: bool) -> dict[str, Any]:
    """Right-padded ids, attention mask, and labels with -100 on padding (and the query)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (tokens, n_query) in enumerate(examples):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        start = n_query if answer_only else 0
        labels[row, start : len(tokens)] = torch.tensor(tokens[start:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_sum(model: Any, batch: dict[str, Any], device: str, bf16: bool) -> tuple[Any, int]:
    """Summed next-token cross-entropy over the labelled tokens, and their count."""
    import torch
    import torch.nn.functional as F

    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
        ).logits
    targets = batch["labels"][:, 1:]
    loss = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=-100,
        reduction="sum",
    )
    return loss, int((targets != -100).sum())


def evaluate(
    model: Any, examples: list[Example], cfg: Config, pad_id: int, device: str, bf16: bool
) -> float | None:
    """Mean loss per labelled token over ``examples``, in eval mode (None when empty)."""
    import torch

    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), cfg.batch_size):
            batch = _batch(examples[start : start + cfg.batch_size], pad_id, cfg.answer_only)
            loss, n = _loss_sum(model, batch, device, bf16)
            total, count = total + float(loss), count + n
    return total / max(count, 1)


def finetune(cfg: Config) -> Result:
    """Train, then save the tuned model, ``finetune.json`` and ``loss.svg`` into cfg.out."""
    import torch

    from harness.engines.models import load_model, pick_device

    check(cfg)
    pairs, skipped = read_pairs(cfg.data, cfg.question_column, cfg.answer_column)
    train_idx, val_idx = split(len(pairs), cfg.val_share, cfg.seed)
    device = pick_device(cfg.device)
    # Loaded on the CPU in float32 whatever the device: load_model would put half
    # precision weights on CUDA, and upcasting those later would not restore them.
    loaded = load_model(cfg.model, "cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    _check_trainable(model, cfg.model, device)
    fmt = PairFormat(tokenizer, cfg.query_template, cfg.answer_template)
    encoded, truncated = _encode(cfg, model, fmt, pairs)
    train = [encoded[i] for i in train_idx]
    val = [encoded[i] for i in val_idx]

    model.to(device)
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    torch.manual_seed(cfg.seed)
    print(
        f"fine-tuning {loaded.name} on {device} ({'bf16 autocast' if bf16 else 'float32'}): "
        f"{len(train)} pairs to train, {len(val)} held out, {cfg.epochs} epoch(s) of "
        f"{-(-len(train) // cfg.batch_size)} steps; a pair reads {fmt.shown(*pairs[0][1:])!r}",
        file=sys.stderr, flush=True,
    )
    history = _train(model, train, val, cfg, tokenizer.pad_token_id, device, bf16)
    model.eval()
    record = {
        "harness_version": __version__,
        "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "base_model": loaded.describe() | {"device": device},
        "data": {
            "path": str(cfg.data.resolve()),
            "sha256": hashlib.sha256(cfg.data.read_bytes()).hexdigest(),
            "pairs": len(pairs),
            "rows_skipped_empty": skipped,
            "pairs_truncated": truncated,
            "train": len(train),
            "validation": len(val),
            "validation_rows": [pairs[i][0] for i in val_idx],  # 1-based data rows
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "format": {
            "bos": fmt.bos, "eos": fmt.eos, "tokenizer_adds_bos": fmt.adds_bos,
            "task_query": fmt.task_query(cfg.question_column),
            "query_template": cfg.query_template, "answer_template": cfg.answer_template,
            "example": fmt.shown(*pairs[0][1:]),
        },
        "precision": "float32 weights, bfloat16 autocast" if bf16 else "float32",
        "losses": {"validation": history.validation, "train": history.train,
                   "steps": history.steps},
        "epoch_s": [round(s, 2) for s in history.epoch_s],
        "versions": {"torch": torch.__version__, "transformers": _transformers_version()},
    }
    save(model, tokenizer, record, cfg.out, cfg.force)
    return Result(cfg.out, record)


def _encode(cfg: Config, model: Any, fmt: PairFormat,
            pairs: list[tuple[int, str, str]]) -> tuple[list[tuple[list[int], int]], int]:
    """Each pair's token ids and query length, cut to --max-length, and how many were
    cut; a --max-length beyond what the model reads is refused."""
    limit = getattr(model.config, "n_positions", None) or getattr(
        model.config, "max_position_embeddings", None
    )
    if limit and cfg.max_length > limit:
        raise HarnessError(f"--max-length {cfg.max_length}: the model reads at most {limit} tokens")
    encoded = [fmt.encode(q, a) for _, q, a in pairs]
    truncated = sum(len(ids) > cfg.max_length for ids, _ in encoded)
    return [(ids[: cfg.max_length], min(n, cfg.max_length)) for ids, n in encoded], truncated


@dataclass
class _History:
    """The losses of a fine-tuning run, as finetune.json keeps them."""

    validation: list[float | None]  # before training, then after each epoch
    train: list[float] = field(default_factory=list)  # each epoch's mean
    steps: list[float] = field(default_factory=list)  # each step's
    epoch_s: list[float] = field(default_factory=list)


def _train(model: Any, train: list[Example], val: list[Example], cfg: Config, pad_id: int,
           device: str, bf16: bool) -> _History:
    """AdamW over ``train`` for cfg.epochs, the validation loss before and after each
    epoch, each said on stderr as it comes."""
    import torch

    log = sys.stderr
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    started = time.perf_counter()
    history = _History([evaluate(model, val, cfg, pad_id, device, bf16)])
    val_s = time.perf_counter() - started
    if history.validation[0] is not None:
        print(f"epoch 0: validation loss {history.validation[0]:.4f} ({val_s:.0f} s)",
              file=log, flush=True)
    for epoch in range(1, cfg.epochs + 1):
        _epoch(model, optimizer, train, cfg, epoch, pad_id, device, bf16, history)
        history.validation.append(evaluate(model, val, cfg, pad_id, device, bf16))
        last = history.validation[-1]
        shown = f", validation loss {last:.4f}" if last is not None else ""
        print(
            f"epoch {epoch}: train loss {history.train[-1]:.4f}{shown} "
            f"({history.epoch_s[-1]:.0f} s)",
            file=log, flush=True,
        )
    return history


def _epoch(model: Any, optimizer: Any, train: list[Example], cfg: Config, epoch: int, pad_id: int,
           device: str, bf16: bool, history: _History) -> None:
    """One pass over ``train`` in a seeded order, a step per batch, into ``history``."""
    from tqdm import tqdm

    model.train()
    order = list(range(len(train)))
    random.Random(f"{cfg.seed}:{epoch}").shuffle(order)
    started = time.perf_counter()
    total, count = 0.0, 0
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    with tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="step", file=sys.stderr,
              dynamic_ncols=True) as bar:
        for chosen in bar:
            batch = _batch([train[i] for i in chosen], pad_id, cfg.answer_only)
            loss, n = _loss_sum(model, batch, device, bf16)
            loss = loss / max(n, 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.detach().item()
            history.steps.append(value)
            total, count = total + value * n, count + n
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    history.epoch_s.append(time.perf_counter() - started)
    history.train.append(total / max(count, 1))


def _check_trainable(model: Any, name: str, device: str) -> None:
    import torch

    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        raise HarnessError(f"--model {name}: a quantized model cannot be trained here")
    params = [p for p in model.parameters() if p.is_floating_point()]
    if not params:
        raise HarnessError(f"--model {name}: has no floating-point weights to train")
    # float32 gradients and AdamW's two moments: three more copies of the weights
    need = 3 * sum(p.numel() * 4 for p in params)
    if device.startswith("cuda"):
        free = torch.cuda.mem_get_info(torch.device(device))[0] - sum(
            p.numel() * 4 for p in params
        )
    else:
        free = _available_memory()
    if free is not None and need > free:
        raise HarnessError(
            f"--model {name}: training needs about {need / 2**30:.1f} GiB more for gradients "
            f"and AdamW's state, but only {max(free, 0) / 2**30:.1f} GiB is free on {device}"
        )


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


# ---------------------------------------------------------------- saving


def save(model: Any, tokenizer: Any, record: dict[str, Any], out: Path, force: bool) -> None:
    """Write the folder under a temporary name and rename it into place when complete.

    A run cut short (^C, a full disk, a crash) leaves at most ``OUT.partial-<pid>``,
    never a folder named OUT that looks like a model. With ``force`` an existing OUT is
    replaced only once the new one is complete.
    """
    from harness.tools.finetune_chart import loss_svg

    with files.new_folder(out, f"--out {out}: cannot write the model",
                          existing="replace" if force else "fail") as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / "finetune.json").write_text(
            json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        losses = record["losses"]
        (partial / "loss.svg").write_text(
            loss_svg(losses["train"], losses["validation"], losses["steps"]), encoding="utf-8"
        )
        if out.exists() and not force:
            raise HarnessError(f"--out {out}: appeared while training; --force replaces it")
