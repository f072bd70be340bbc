"""The engine for models behind a server that speaks the OpenAI API (``--backend openai``):
vLLM's ``vllm serve``, ``transformers serve``, llama.cpp's server, Ollama, hosted APIs.

Plain prompts go to ``/completions``; prompts laid out as chat turns (``--chat``: their
text is the messages, see ``chat.server_text``) go to ``/chat/completions``, where the
server applies the model's chat template. Requests run ``concurrency`` at a time and
each answer is handed to the runner as it arrives (the contract's ``Streaming``), so a
server that dies mid-run loses nothing that finished.

What the server is decides what it takes (``mapping.KINDS``): vLLM is told apart by its
``/version``, llama.cpp by its ``/props``, ``transformers serve`` by its POST-only
``/load_model``; any other server gets the API's own fields.
The served model is known by its name alone: the same name may serve other weights
tomorrow, which run.json and the report say. The key is read from an environment
variable and goes nowhere but the request's header.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from harness.engines.contract import (
    Generation,
    Job,
    LabelScore,
    ModelInfo,
    Options,
    Parallel,
    Server,
)
from harness.engines.openai import mapping
from harness.engines.openai.client import Client, ServerError
from harness.errors import HarnessError
from harness.tasks import chat

if TYPE_CHECKING:
    from harness.tasks.decoding import Setting

SERVED_NOTE = ("a served model is known by its name alone: the server may serve other "
               "weights under the same name later, so a rerun can differ")


class ServedInfo(ModelInfo):
    """``describe()`` of a served model: ModelInfo and what the server told."""

    server: dict[str, Any]  # base URL, kind, version, model id, max_model_len
    system_fingerprint: list[str] | None  # every one the answers gave
    usage: dict[str, int]  # tokens, summed over the run
    note: str  # that the name may serve other weights later


class OpenAIBackend:
    name = "openai"
    chat_on_server = True  # chat prompts are sent as messages; the server templates them

    def __init__(self, client: Client, model: str, kind: str, info: dict[str, Any],
                 server: Server, load_s: float) -> None:
        self.client = client
        self.model = model
        self.kind = mapping.KINDS[kind]
        self.kind_key = kind
        self.info = info
        self.server = server
        self.load_s = load_s
        self.usage: dict[str, int] = {}
        self.fingerprints: set[str] = set()

    # ------------------------------------------------------------ the registry's questions

    @classmethod
    def available(cls) -> str | None:
        try:
            import httpx  # noqa: F401
        except ImportError:
            return "--backend openai needs httpx: pip install httpx"
        return None

    @classmethod
    def prefers(cls, device: str) -> bool:
        return False  # never chosen by --backend auto: it needs a --base-url

    @classmethod
    def refusal(cls, setting: Setting, options: Options) -> str | None:
        return mapping.general_refusal(setting)

    def refuses(self, setting: Setting, options: Options) -> str | None:
        """``refusal`` once the server is known (what this kind of server takes)."""
        return mapping.server_refusal(self.kind, setting, options, self.client.url)

    def ranking_refusal(self) -> str | None:
        """Why labels cannot be ranked by likelihood here (None: they can)."""
        if self.kind.prompt_logprobs:
            return None
        return (f"label ranking (scoring: likelihood or both) needs the prompt's "
                f"log-probabilities, which the {self.kind.name} server at {self.client.url} "
                "does not return; use --scoring generate, or a vLLM server")

    @classmethod
    def open(cls, model: str, *, device: str = "auto", fast: bool = True,
             parallel: Parallel | None = None, server: Server | None = None) -> OpenAIBackend:
        """Reach the server, find the model it serves under ``model`` (the one it serves,
        for ``default``) and what kind of server it is."""
        server = server or Server()
        if server.concurrency < 1:
            raise HarnessError("--concurrency must be 1 or more")
        if server.timeout <= 0:
            raise HarnessError("--timeout must be more than 0 seconds")
        started = time.perf_counter()
        key = os.environ.get(server.api_key_env) or None
        client = Client(server.base_url, key, server.api_key_env, server.timeout,
                        server.retries, server.concurrency)
        try:
            listed = client.get("models", quiet=True)  # a wrong key stops here
            entries = [m for m in (listed or {}).get("data") or [] if isinstance(m, dict)]
            model, entry = _served(model, entries, client.url)
            kind, version = _kind(client)
        except BaseException:
            client.close()
            raise
        info = {"entry": entry, "version": version}
        return cls(client, model, kind, info, server, round(time.perf_counter() - started, 2))

    # ------------------------------------------------------------ the contract

    def identity(self) -> dict[str, Any]:
        return {"engine": self.name, "server": self.client.url, "kind": self.kind_key,
                "model": self.model, "chat_args": self.server.chat_args,
                "thinking_budget": self.server.thinking_budget}

    def describe(self) -> ServedInfo:
        entry = self.info["entry"] or {}
        return {
            "name": self.model,
            # the name at this server: all that can be known of the weights behind it
            "fingerprint": f"served:{self.client.url}:{self.model}",
            "type": "served",
            "device": self.client.url,
            "dtype": "unknown",  # the server does not say
            "load_s": self.load_s,
            "server": {"base_url": self.client.url, "kind": self.kind.name,
                       "version": self.info["version"], "model_id": self.model,
                       "owned_by": entry.get("owned_by"), "root": entry.get("root"),
                       "max_model_len": entry.get("max_model_len")},
            "system_fingerprint": sorted(self.fingerprints) or None,
            "usage": dict(self.usage),
            "note": SERVED_NOTE,
        }

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Characters, not tokens: a server's prompts need no batching by length, and
        asking the server to count would cost a request a prompt. (No context length
        is reported either, so prompts are not cut here; the server refuses one that
        does not fit, in one line.)"""
        return [len(t) for t in texts]

    def batch_rows(self, setting: Setting) -> int:
        return 1  # each request stands alone; ``stream`` keeps ``concurrency`` in flight

    def generate(self, prompts: list[str], setting: Setting, seeds: list[int | None],
                 options: Options) -> list[list[Generation]]:
        jobs: list[Job] = [(p, setting, s) for p, s in zip(prompts, seeds, strict=True)]
        outputs: dict[int, list[Generation]] = dict(self.stream(jobs, options))
        return [outputs[i] for i in range(len(jobs))]

    def stream(self, jobs: list[Job], options: Options
               ) -> Generator[tuple[int, list[Generation]], None, None]:
        bodies = [self.request(prompt, setting, seed, options) for prompt, setting, seed in jobs]
        answers = self.client.stream(bodies)
        try:
            for index, answer in answers:
                setting = jobs[index][1]
                yield index, self._outputs(answer, bodies[index][0], setting, options)
        finally:
            answers.close()

    def rank_labels(self, prompts: list[str], labels: list[str]) -> list[list[LabelScore]]:
        """Each label's log-probability from the server's log-probabilities of the prompt
        itself (``echo`` with ``logprobs``), where the server gives them: the tokens of
        prompt + label past those of the prompt alone (counted by vLLM's ``/tokenize``),
        the split ``tokens.split`` makes for every engine."""
        return self.rank_choices(prompts, [labels] * len(prompts))

    def rank_choices(self, prompts: list[str], choices: list[list[str]]
                     ) -> list[list[LabelScore]]:
        """``rank_labels`` with each prompt's own choices (multiple choice)."""
        from harness.engines.tokens import split

        refused = self.ranking_refusal()
        if refused:
            raise ServerError(refused)
        if any(chat.server_messages(p) is not None for p in prompts):
            raise ServerError("label ranking takes plain prompts; chat turns go to the chat "
                              "endpoint, which returns no prompt log-probabilities")
        owners = [(p, j) for p, own in enumerate(choices) for j in range(len(own))]
        pairs = [split(prompts[p], choices[p][j]) for p, j in owners]
        contexts = list(dict.fromkeys(context for context, _ in pairs))
        counted = {contexts[i]: answer.get("count") for i, answer in self.client.stream(
            [("/tokenize", {"model": self.model, "prompt": c}) for c in contexts])}
        bodies = [("completions", {"model": self.model, "prompt": context + continuation,
                                   "max_tokens": 1, "temperature": 0.0, "echo": True,
                                   "logprobs": 0}) for context, continuation in pairs]
        scores: dict[int, LabelScore] = {}
        for index, answer in self.client.stream(bodies):
            self._count(answer)
            context = pairs[index][0]
            whole = (answer.get("usage") or {}).get("prompt_tokens")
            if not isinstance(whole, int) or not isinstance(counted[context], int):
                raise ServerError(f"{self.client.url}: the server did not count the prompt's "
                                  "tokens, which label ranking needs")
            total, count = mapping.label_logprob(answer["choices"][0], counted[context], whole)
            if count == 0:
                raise ServerError(f"{self.client.url}: the server returned no log-"
                                  "probabilities for the prompt (echo with logprobs)")
            p, j = owners[index]
            scores[index] = LabelScore(choices[p][j], total, count)
        found = iter(scores[i] for i in range(len(owners)))
        return [[next(found) for _ in own] for own in choices]

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------ requests and answers

    def request(self, prompt: str, setting: Setting, seed: int | None, options: Options
              ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model}
        messages = chat.server_messages(prompt)
        if messages is not None:
            path = "chat/completions"
            body["messages"] = messages
            if self.kind.token_logprobs:
                body["logprobs"] = True
            if self.server.chat_args:
                body["chat_template_kwargs"] = self.server.chat_args
        else:
            path = "completions"
            body["prompt"] = prompt
            if self.kind.token_logprobs:
                body["logprobs"] = 0
        if self.server.thinking_budget is not None:
            body["thinking_token_budget"] = self.server.thinking_budget
        body |= mapping.sampling(self.kind, setting, seed, options)
        return path, body

    def _outputs(self, answer: Any, path: str, setting: Setting, options: Options
                 ) -> list[Generation]:
        self._count(answer)
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if setting.beams > 1:  # every beam comes back, best first: the best are returned
            choices = choices[: setting.sequences]
        if len(choices) != setting.sequences:
            raise ServerError(
                f"{self.client.url}: asked for {setting.sequences} sequence(s) (n) in "
                f"setting {setting.name!r}, the {self.kind.name} server returned "
                f"{len(choices)}; it does not take n: run that setting with one sequence"
            )
        completion = (answer.get("usage") or {}).get("completion_tokens")
        each = completion // len(choices) if isinstance(completion, int) else None
        return [mapping.generation(c, path.startswith("chat"), options, self.kind, each)
                for c in choices]

    def _count(self, answer: dict[str, Any]) -> None:
        """Token usage and system fingerprints, summed over the run for run.json."""
        usage = answer.get("usage") or {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if isinstance(usage.get(key), int):
                self.usage[key] = self.usage.get(key, 0) + usage[key]
        details = usage.get("completion_tokens_details") or {}
        if isinstance(details.get("reasoning_tokens"), int):
            self.usage["reasoning_tokens"] = (self.usage.get("reasoning_tokens", 0)
                                              + details["reasoning_tokens"])
        if isinstance(answer.get("system_fingerprint"), str):
            self.fingerprints.add(answer["system_fingerprint"])


def _served(model: str, entries: list[dict[str, Any]], url: str
            ) -> tuple[str, dict[str, Any] | None]:
    """The served model's id and its /models entry. ``default`` (no --model) takes the
    one model a server serves; a name the server does not list is used as given (some
    servers load models on demand), and refused by the server if it is wrong."""
    ids = [str(e.get("id")) for e in entries]
    if model in ("default", ""):
        if len(ids) == 1:
            return ids[0], entries[0]
        served = ", ".join(ids[:8]) or "none listed"
        raise HarnessError(f"--base-url {url}: name the served model with --model (it serves "
                           f"{served})")
    for entry in entries:
        if entry.get("id") == model:
            return model, entry
    return model, None


def _kind(client: Client) -> tuple[str, str | None]:
    """Which kind of server this is (see ``mapping.KINDS``), and its version if told."""
    version = client.get("/version", quiet=True)
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        return "vllm", version["version"]
    props = client.get("/props", quiet=True)
    if isinstance(props, dict) and "default_generation_settings" in props:
        return "llama.cpp", props.get("build_info")
    if client.status("/load_model") == 405:  # transformers serve's POST-only route
        return "transformers", None
    return "openai", None

