"""A decoding setting as an OpenAI-API request, and an answer as the harness's outputs.

Every server takes the API's own fields: temperature (0 for greedy), top_p, n, stop,
seed, max_tokens. The rest of the harness's settings are not in the API; some servers
take them as fields of their own, named here per kind of server (``KINDS``). A setting
that no server of the API runs (beam search, n-gram blocking, typical-p) is refused
before the server is asked anything; one that this kind of server does not take is
refused once the server is known, still before any request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.engines.contract import Generation, Options, cut_at_stop

if TYPE_CHECKING:
    from harness.tasks.decoding import Setting


@dataclass(frozen=True)
class Kind:
    """What one kind of server takes beyond the API's own fields."""

    name: str
    extras: dict[str, str] = field(default_factory=dict)  # setting argument -> field
    bad_words: bool = False  # a list of strings the model must not produce
    token_logprobs: bool = False  # each generated token's log-probability (logprobs: 0)
    prompt_logprobs: bool = False  # echo + logprobs: the prompt's own log-probabilities
    exact_stops: bool = False  # says which stop string ended an answer (eos told apart)
    thinking_budget: bool = False  # thinking_token_budget
    beam_search: bool = False  # use_beam_search, n beams returned best first
    sampling: bool = True  # temperature > 0 samples (else it is ignored: refused here)


KINDS = {
    "vllm": Kind("vLLM", {"top_k": "top_k", "min_p": "min_p",
                          "repetition_penalty": "repetition_penalty",
                          "min_new_tokens": "min_tokens"},
                 bad_words=True, token_logprobs=True, prompt_logprobs=True, exact_stops=True,
                 thinking_budget=True, beam_search=True),
    "llama.cpp": Kind("llama.cpp", {"top_k": "top_k", "min_p": "min_p",
                                    "repetition_penalty": "repeat_penalty"}),
    # transformers 5.19's server decodes as the model's generation_config says: with
    # do_sample unset, every temperature and seed gave the same greedy text (n, which
    # only sampling asks for, it ignores: ``backend._outputs`` says so in one line)
    "transformers": Kind("transformers", sampling=False),
    "openai": Kind("OpenAI-compatible"),  # anything else: the API's own fields only
}

# Arguments whose value here means "off", so that a server without them runs the setting.
NEUTRAL = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "min_new_tokens": 0}


def general_refusal(setting: Setting) -> str | None:
    """What no OpenAI-compatible server runs (asked before the server is known)."""
    args = setting.args
    if args.get("no_repeat_ngram_size"):
        return "n-gram blocking (no_repeat_ngram_size) is not offered by OpenAI-compatible servers"
    if args.get("typical_p") not in (None, 1.0):
        return "typical_p is not offered by OpenAI-compatible servers"
    return None


def server_refusal(kind: Kind, setting: Setting, options: Options, where: str) -> str | None:
    """What this kind of server does not take; None where it runs the setting."""
    refused = general_refusal(setting)
    if refused:
        return refused
    if setting.beams > 1 and not kind.beam_search:
        return f"beam search (num_beams) is not offered by the {kind.name} server at {where}"
    if setting.sampled and not kind.sampling:
        return (f"sampling (do_sample) is not done by the {kind.name} server at {where}: it "
                "decodes as the model's generation_config says, whatever temperature asks")
    if setting.beams > 1 and setting.sampled:
        return f"beam search with sampling is not offered by the {kind.name} server at {where}"
    for arg, value in setting.args.items():
        if arg in NEUTRAL and value != NEUTRAL[arg] and arg not in kind.extras:
            return f"{arg} is not taken by the {kind.name} server at {where}"
    if options.bad_words and not kind.bad_words:
        return f"bad_words is not taken by the {kind.name} server at {where}"
    return None


def sampling(kind: Kind, setting: Setting, seed: int | None, options: Options) -> dict[str, Any]:
    """The fields a request of ``setting`` carries, besides the model and the prompt."""
    args = setting.args
    body: dict[str, Any] = {"max_tokens": args.get("max_new_tokens", options.max_new_tokens)}
    if setting.beams > 1:  # vLLM: n is the beam width; the best sequences come first
        body |= {"use_beam_search": True, "n": setting.beams, "temperature": 0.0}
        if args.get("length_penalty") is not None:
            body["length_penalty"] = args["length_penalty"]
    elif setting.sampled:
        body["temperature"] = args.get("temperature", 1.0)
        if args.get("top_p") is not None:
            body["top_p"] = args["top_p"]
        if seed is not None:
            body["seed"] = seed
    else:
        body["temperature"] = 0.0  # greedy
    if setting.sequences > 1 and setting.beams == 1:
        body["n"] = setting.sequences
    if options.stop:
        body["stop"] = list(options.stop)
        if kind.exact_stops:
            body["include_stop_str_in_output"] = True  # cut here, and "stop" told from eos
    for arg, name in kind.extras.items():
        if args.get(arg) is not None and args[arg] != NEUTRAL[arg]:
            body[name] = args[arg]
    if options.bad_words:
        body["bad_words"] = list(options.bad_words)
    return body


def generation(choice: dict[str, Any], chat: bool, options: Options, kind: Kind,
               tokens_each: int | None) -> Generation:
    """One returned choice as the harness reports it. ``tokens_each``: the generated
    tokens per choice where the server counts them only in its usage (else None)."""
    if chat:
        message = choice.get("message") or {}
        raw = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        logprobs = [t.get("logprob") for t in (choice.get("logprobs") or {}).get("content") or []]
    else:
        raw, reasoning = choice.get("text") or "", None
        logprobs = list((choice.get("logprobs") or {}).get("token_logprobs") or [])
    text, stopped = cut_at_stop(raw, options.stop)
    finish = choice.get("finish_reason")
    if stopped or isinstance(choice.get("stop_reason"), str):
        reason = "stop"
    elif finish == "length":
        reason = "length"
    else:
        reason = "eos"
    known = [p for p in logprobs if isinstance(p, (int, float))]
    n_tokens = len(logprobs) if logprobs else (tokens_each or 0)
    mean = sum(known) / len(known) if known else None
    return Generation(text, raw, n_tokens, mean, reason, reasoning if reasoning else None)


def label_logprob(choice: dict[str, Any], context_tokens: int, prompt_tokens: int
                  ) -> tuple[float, int]:
    """The summed log-probability of an echoed prompt's tokens past its first
    ``context_tokens`` (``echo`` with ``logprobs``; the prompt has ``prompt_tokens``), and
    how many they are. Counted in tokens, as the server counts them: its character
    offsets are lengths of token texts, which a token such as <unk> misstates."""
    values = ((choice.get("logprobs") or {}).get("token_logprobs") or [])[:prompt_tokens]
    tail = [v for v in values[context_tokens:] if isinstance(v, (int, float))]
    return float(sum(tail)), len(tail)
