"""Which speed-ups of the transformers backend are exact for a model, decided at load time.

Each speed-up, where it lives, and when it gives what plain transformers gives (a
left-padded batch through ``generate``, which itself equals one prompt at a time):

- reading prompts into the cache before ``generate`` (``prefill``): the model's cache is
  transformers' dynamic cache and each of its layers is of a kind ``prefill.layer_kind``
  knows (keys and values, a window of them, a running state of linear attention or
  convolution);
- padding inside rows (a shared prefix read once, length groups merged, ``prefill``):
  every layer holds keys and values (no running state, which would carry the padding
  along), and, per batch, the longest prompt plus the new tokens fit in the shortest
  attention window (a window counts cache columns, padding included);
- a prompt read once for all its beams, returned sequences or labels
  (``prefill.repeat_rows``, ``likelihood``): every layer of a known kind;
- the blocked float32 output projection (``speedups``): on CPU, a bias-free linear head
  of at least 16,384 rows (it also checks float32 and no gradients at each call); the
  bfloat16 screen on top of it where the CPU multiplies bfloat16 natively;
- the fast sampler (``sampler.Sampler``): per setting, ``fast_sampling_applies``.

Where a condition fails, that part runs as plain transformers runs it, and the reason is
recorded (``HFBackend.identity`` puts it in run.json and in the result cache's keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.engines.hf import prefill
from harness.engines.hf.speedups import native_bfloat16

_HEAD_ROWS = 16384  # a smaller output projection is as fast computed plainly


@dataclass(frozen=True)
class Speedups:
    """The speed-ups that apply to one model (on the fast path), and why others do not."""

    prefill: bool = False  # prompts read into the cache before generate
    padding_inside: bool = False  # shared prefix and length groups (padding inside rows)
    repeat_cache: bool = False  # a prompt read once for its beams, sequences or labels
    window: int | None = None  # the shortest attention window, in tokens
    head: bool = False  # blocked float32 output projection
    screen: bool = False  # its bfloat16 screen
    sampler: bool = False  # the fast sampler, for the settings it serves
    plain_because: dict[str, str] = field(default_factory=dict)

    def inside_fits(self, longest: int, new_tokens: int) -> bool:
        """Whether padding may go inside the rows of a batch whose longest prompt has
        ``longest`` tokens and which generates up to ``new_tokens`` more."""
        if not self.padding_inside:
            return False
        return self.window is None or longest + new_tokens <= self.window

    def record(self) -> dict[str, Any]:
        """As run.json and the result cache's keys hold it."""
        names = ("prefill", "padding_inside", "repeat_cache", "head", "screen", "sampler")
        return {
            "applied": [name for name in names if getattr(self, name)],
            "window": self.window,
            "plain_because": dict(sorted(self.plain_because.items())),
        }


def decide(model: Any, fast: bool = True, on_cpu: bool = True) -> Speedups:
    """The speed-ups that are exact for ``model``, found from its cache and output layer."""
    if not fast:
        return Speedups(plain_because={"all": "the plain path was asked for (--plain)"})
    why: dict[str, str] = {}
    found = probe(model)
    kinds = found.kinds
    known = kinds is not None and all(kind is not None for kind in kinds)
    if found.failure is not None:
        why["prefill"] = f"reading two tokens into a cache failed ({found.failure})"
    elif kinds is None:
        why["prefill"] = "the model keeps its own kind of cache, not transformers' dynamic one"
    elif not known:
        odd = sorted({name for name, kind in zip(found.classes, kinds) if kind is None})
        why["prefill"] = f"cache layers of a kind the harness does not handle: {', '.join(odd)}"
    attention_only = known and all(kind in ("attention", "sliding") for kind in kinds or [])
    if known and not attention_only:
        why["padding_inside"] = (
            "layers with a running state (linear attention or convolution) would carry "
            "padding inside a row along"
        )
    elif "prefill" in why:
        why["padding_inside"] = why["repeat_cache"] = "see prefill"
    head = model.get_output_embeddings()
    head_ok = _blockable(head, on_cpu)
    if not head_ok:
        why["head"] = "only for a bias-free linear output layer of 16,384 rows or more, on CPU"
    elif not native_bfloat16():
        why["screen"] = "this CPU has no native bfloat16 products"
    return Speedups(
        prefill=known,
        padding_inside=attention_only,
        repeat_cache=known,
        window=found.window,
        head=head_ok,
        screen=head_ok and native_bfloat16(),
        sampler=True,
        plain_because=why,
    )


@dataclass(frozen=True)
class Probe:
    """What a model's cache is made of, found by reading two tokens into a fresh one."""

    kinds: list[str | None] | None  # per layer (prefill.layer_kind); None: not a dynamic cache
    classes: list[str]  # the layers' class names
    window: int | None  # the shortest attention window
    failure: str | None = None  # why reading failed, if it did


def probe(model: Any) -> Probe:
    import torch

    ids = torch.zeros((1, 2), dtype=torch.long, device=model.device)
    try:
        with torch.inference_mode():
            out = model.base_model(input_ids=ids, use_cache=True)
    except Exception as exc:  # noqa: BLE001 (any failure means: leave its cache alone)
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return Probe(None, [], None, f"{type(exc).__name__}: {first}")
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None:
        return Probe(None, [], None, "the model returned no cache")
    layers = list(getattr(cache, "layers", []))
    windows = [layer.sliding_window for layer in layers
               if "sliding" in (prefill.layer_kind(layer) or "")]
    return Probe(prefill.cache_kinds(cache), [type(layer).__name__ for layer in layers],
                 min(windows) if windows else None)


def _blockable(head: Any, on_cpu: bool) -> bool:
    import torch

    return (
        on_cpu and isinstance(head, torch.nn.Linear) and head.bias is None
        and head.weight.shape[0] >= _HEAD_ROWS
    )
