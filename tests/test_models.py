"""Tests for harness.engines.models: the KoGPT-2 layout, Hugging Face folders, fingerprints, GGUF."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.engines import models
from harness.engines.models import fingerprint_files, load_model, resolve
from harness.errors import HarnessError


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def saved_state(folder: Path) -> dict:
    import torch

    return torch.load(folder / "pytorch_model.bin", weights_only=True)


# ---------------------------------------------------------------- the KoGPT-2 layout


def test_the_kogpt2_layout_loads_as_the_lessons_set_it_up(kogpt2_dir: Path) -> None:
    assert not (kogpt2_dir / "config.json").exists()
    assert not (kogpt2_dir / "tokenizer.json").exists()
    vocab = json.loads((kogpt2_dir / "vocab.json").read_text(encoding="utf-8"))

    loaded = load_model(str(kogpt2_dir), "cpu")

    config = loaded.model.config
    assert config.model_type == "gpt2"
    assert config.vocab_size == len(vocab)
    assert config.n_layer == 2 and config.n_embd == 64 and config.n_head == 1
    assert config.n_positions == 128
    tokenizer = loaded.tokenizer
    for name, token in [("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>")]:
        assert getattr(tokenizer, f"{name}_token") == token
        assert getattr(tokenizer, f"{name}_token_id") == vocab[token]
    assert config.eos_token_id == vocab["</s>"] and config.pad_token_id == vocab["<pad>"]
    assert loaded.model.generation_config.pad_token_id == vocab["<pad>"]
    assert tokenizer.padding_side == "left"
    assert loaded.device == "cpu" and loaded.dtype == "float32"
    assert not loaded.model.training
    # Korean text tokenizes into known pieces, not <unk>.
    ids = tokenizer("오늘은 하늘이 맑고", add_special_tokens=False)["input_ids"]
    assert ids and vocab["<unk>"] not in ids


def test_the_kogpt2_weights_are_the_saved_ones_not_random(kogpt2_dir: Path) -> None:
    import torch

    state = {k.removeprefix("transformer."): v for k, v in saved_state(kogpt2_dir).items()}
    model = load_model(str(kogpt2_dir), "cpu").model
    loaded = model.transformer.state_dict()
    checked = [k for k in state if k in loaded]
    assert len(checked) >= 2 + 2 * 12  # embeddings and every layer's weights
    for key in checked:
        assert torch.equal(loaded[key], state[key]), key
    assert torch.equal(model.lm_head.weight, state["wte.weight"])


@pytest.mark.parametrize(
    "drop",
    [
        lambda key: key == "transformer.h.1.attn.c_attn.weight",  # one weight of a layer
        lambda key: key.startswith("transformer.h.0."),  # a whole layer, not the last
        lambda key: key.startswith("transformer.h.1.mlp."),  # a layer's MLP
    ],
)
def test_weights_missing_from_the_state_dict_are_an_error(kogpt2_dir, tmp_path, drop) -> None:
    import torch

    folder = copy_of(kogpt2_dir, tmp_path)
    state = {k: v for k, v in saved_state(folder).items() if not drop(k)}
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(HarnessError, match="refusing to leave weights random") as caught:
        load_model(str(folder), "cpu")
    assert str(folder) in str(caught.value)


def test_a_config_json_wins_over_the_shapes(kogpt2_dir: Path, tmp_path: Path) -> None:
    from transformers import GPT2Config

    folder = copy_of(kogpt2_dir, tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    config = GPT2Config(vocab_size=len(vocab), n_embd=64, n_layer=2, n_positions=128, n_head=4)
    config.to_json_file(str(folder / "config.json"))

    loaded = load_model(str(folder), "cpu")
    assert loaded.model.config.n_head == 4  # the shapes alone would say 1 (64 / 64)
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.model.config.eos_token_id == vocab["</s>"]


def test_a_vocabulary_larger_than_the_model_is_an_error(kogpt2_dir, tmp_path) -> None:
    import torch

    folder = copy_of(kogpt2_dir, tmp_path)
    state = saved_state(folder)
    for key in ("transformer.wte.weight", "lm_head.weight"):
        if key in state:
            state[key] = state[key][:100].clone()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(HarnessError, match="embeddings"):
        load_model(str(folder), "cpu")


def test_a_vocab_without_the_special_tokens_is_an_error(kogpt2_dir, tmp_path) -> None:
    folder = copy_of(kogpt2_dir, tmp_path)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab["<mask>"] = vocab.pop("<pad>")
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(HarnessError, match="<pad>"):
        load_model(str(folder), "cpu")


def test_unreadable_weights_are_an_error(kogpt2_dir, tmp_path) -> None:
    folder = copy_of(kogpt2_dir, tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(HarnessError, match="cannot read the weights"):
        load_model(str(folder), "cpu")


def _bad_merges_line(folder: Path) -> None:
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    lines.insert(3, "a merge of three parts")
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _merge_of_unknown_tokens(folder: Path) -> None:
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"][2] = ["없는조각", "또없는조각"]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _unknown_model_kind(folder: Path) -> None:
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["type"] = "Unheard"
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize(
    ("layout", "damage"),
    [("kogpt2_dir", _bad_merges_line), ("hf_model_dir", _merge_of_unknown_tokens),
     ("hf_model_dir", _unknown_model_kind)],
)
def test_an_unreadable_tokenizer_is_one_error_line(request, tmp_path, write_task, capsys,
                                                    layout, damage) -> None:
    # tokenizers raises a bare Exception for these, which no narrower except catches
    from harness.cli import main

    folder = copy_of(request.getfixturevalue(layout), tmp_path)
    damage(folder)
    with pytest.raises(HarnessError, match="cannot load its tokenizer"):
        load_model(str(folder), "cpu")
    task = write_task()
    for argv in (["run", str(task), "--model", str(folder), "--out", str(tmp_path / "r")],
                 ["preview", str(task), "--model", str(folder)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if line.startswith("harness:")]
        assert line.startswith("harness: error: ") and "tokenizer" in line
        assert "Traceback" not in err


# ---------------------------------------------------------------- folders and paths


def test_a_hugging_face_folder_loads(hf_model_dir: Path) -> None:
    loaded = load_model(str(hf_model_dir), "cpu")
    assert loaded.model.config.model_type == "gpt2"
    assert loaded.model.config.n_layer == 2
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token == "<pad>"
    assert loaded.model.generation_config.pad_token_id == loaded.tokenizer.pad_token_id
    info = loaded.describe()
    assert info["type"] == "gpt2" and info["device"] == "cpu"
    assert info["vocab_size"] == len(loaded.tokenizer)
    assert info["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert len(info["fingerprint"]) == 64


def test_paths_that_are_not_models_are_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="no such file or folder"):
        load_model(str(tmp_path / "missing"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="not a model folder"):
        load_model(str(tmp_path / "empty"), "cpu")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(HarnessError, match="not a model"):
        load_model(str(tmp_path / "notes.txt"), "cpu")
    with pytest.raises(HarnessError, match="no such file or folder"):
        resolve("./some/where")


def test_a_hub_id_is_left_to_the_hub_and_a_local_folder_is_not() -> None:
    assert resolve("skt/kogpt2-base-v2") is None


def test_an_unknown_device_is_an_error() -> None:
    with pytest.raises(HarnessError, match="--device"):
        models.pick_device("tpu")
    assert models.pick_device("cpu") == "cpu"


# ---------------------------------------------------------------- fingerprints


def test_the_fingerprint_changes_with_the_weights_and_only_then(kogpt2_dir, tmp_path) -> None:
    import torch

    folder = copy_of(kogpt2_dir, tmp_path)
    weights = folder / "pytorch_model.bin"
    first = fingerprint_files(folder)
    assert fingerprint_files(folder) == first

    # The same bytes written again: same fingerprint. A hidden file does not count.
    weights.write_bytes(weights.read_bytes())
    (folder / ".DS_Store").write_bytes(b"junk")
    assert fingerprint_files(folder) == first

    # One weight changed, file size unchanged (as after fine-tuning).
    state = saved_state(folder)
    state["transformer.wpe.weight"][0, 0] += 1.0
    before = weights.stat()
    torch.save(state, weights)
    assert weights.stat().st_size == before.st_size
    # written a second later, as any real change is (the digest is memoised by mtime)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    changed = fingerprint_files(folder)
    assert changed != first

    # A tokenizer file counts too.
    (folder / "merges.txt").write_text((folder / "merges.txt").read_text() + "\n")
    assert fingerprint_files(folder) not in (first, changed)


def test_fingerprints_are_memoised_in_the_harness_cache_only(kogpt2_dir, tmp_path) -> None:
    folder = copy_of(kogpt2_dir, tmp_path)
    fingerprint_files(folder)
    memo = json.loads((models.cache_root() / "sha256.json").read_text())
    assert any(key.startswith(str(folder.resolve())) for key in memo)
    assert str(models.cache_root()).startswith(os.environ["HARNESS_CACHE"])


# ---------------------------------------------------------------- GGUF conversion


@pytest.fixture
def fake_gguf(tmp_path, hf_model_dir, monkeypatch):
    """A .gguf file and transformers' GGUF loading replaced by the tiny HF model."""
    import transformers

    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF not really")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_model_dir)
    calls: list[dict] = []

    def fake_model(where, gguf_file=None, **kwargs):
        calls.append({"where": where, "gguf_file": gguf_file})
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda where, gguf_file=None, **kwargs: tokenizer)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return path, model, calls


def test_a_gguf_file_is_converted_once_into_the_cache(fake_gguf, tmp_path) -> None:
    path, _, calls = fake_gguf
    folder = resolve(str(path))
    assert folder.parent == tmp_path / "cache" / "models"
    assert folder.name.startswith("tiny-") and (folder / "config.json").exists()
    assert calls == [{"where": str(tmp_path), "gguf_file": "tiny.gguf"}]
    assert resolve(str(path)) == folder
    assert len(calls) == 1  # the second time reuses the folder
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_a_conversion_cut_short_leaves_no_folder_that_looks_usable(
    fake_gguf, tmp_path, monkeypatch
) -> None:
    path, model, _ = fake_gguf
    real_save = model.save_pretrained

    def save_then_fail(where, *args, **kwargs):
        real_save(where, *args, **kwargs)  # the weights are written...
        raise OSError(28, "No space left on device")  # ...and then the disk is full

    monkeypatch.setattr(model, "save_pretrained", save_then_fail)
    with pytest.raises(HarnessError, match="No space left"):
        resolve(str(path))
    models_dir = tmp_path / "cache" / "models"
    assert list(models_dir.iterdir()) == []  # neither the final folder nor a partial one

    monkeypatch.setattr(model, "save_pretrained", real_save)
    folder = resolve(str(path))  # the next run converts again and succeeds
    assert (folder / "config.json").exists()


def test_an_unreadable_gguf_file_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF but truncated")
    with pytest.raises(HarnessError, match="cannot load this GGUF file"):
        resolve(str(path))
    assert not (tmp_path / "cache" / "models").exists() or not any(
        (tmp_path / "cache" / "models").iterdir()
    )


@pytest.mark.parametrize("vocab", [b"\x00\x01 garbage", b'{"<s>": "not a number"}', b"[1, 2]"])
def test_a_garbage_vocab_json_is_one_clear_error(kogpt2_dir, tmp_path, vocab) -> None:
    folder = copy_of(kogpt2_dir, tmp_path)
    (folder / "vocab.json").write_bytes(vocab)
    with pytest.raises(HarnessError, match="cannot load its tokenizer"):
        load_model(str(folder), "cpu")


def test_a_full_disk_leaves_no_scratch_file_of_the_fingerprint_memo(
    kogpt2_dir, tmp_path, monkeypatch
) -> None:
    import errno

    folder = copy_of(kogpt2_dir, tmp_path)
    cache = Path(os.environ["HARNESS_CACHE"])
    written = Path.write_text

    def full(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if self.parent == cache:
            written(self, text[:10], *args, **kwargs)  # what fitted, then no space
            raise OSError(errno.ENOSPC, "No space left on device")
        return written(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert fingerprint_files(folder) == fingerprint_files(folder)  # still computed
    left = [p.name for p in cache.iterdir() if "sha256.json" in p.name]
    assert left in ([], ["sha256.json"])  # the memo of an earlier test at most, no scratch


def test_weights_replaced_in_place_with_the_old_size_and_time_get_a_new_fingerprint(
    kogpt2_dir, tmp_path
) -> None:
    import torch

    folder = copy_of(kogpt2_dir, tmp_path)
    weights = folder / "pytorch_model.bin"
    first = fingerprint_files(folder)
    before = weights.stat()
    state = saved_state(folder)
    state["transformer.wpe.weight"][0, 0] += 1.0
    for _ in range(1000):  # until the file system's clock has moved on (it is coarse)
        torch.save(state, weights)
        os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old time
        if weights.stat().st_ctime_ns != before.st_ctime_ns:
            break
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert fingerprint_files(folder) != first
