"""Prompts sent through a tokenizer's chat template (task field ``chat``, ``--chat``).

Instruct models (EXAONE-Instruct, Qwen-Instruct, Gemma-it, ...) were trained on text
laid out by their chat template; fed raw text they answer worse than they can. Two
ways to lay out a prompt as turns:

- ``turns``: the instruction as the system turn, each example as a user turn (the query
  template rendered on the example) and an assistant turn (its target), the item's
  query as the last user turn, as lm-evaluation-harness does with
  ``--apply_chat_template --fewshot_as_multiturn``;
- ``single``: one user turn holding the whole plain prompt.

The template then adds the opening of the assistant's turn (``add_generation_prompt``),
so the answer starts where the prompt ends. A template that refuses a system turn (some
do) gets the instruction at the top of the first user turn instead. The templated text
is the prompt: ``preview`` shows it, the records and run.json keep it, and it is
tokenized as transformers tokenizes templated text (``tokens.prompt_ids``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from harness.errors import HarnessError
from harness.tasks.prompts import Prompt, Templates
from harness.tasks.spec import LoadedTask

MODES = ("none", "turns", "single")
# What run and preview say when a model with a chat template is given plain prompts.
PLAIN_NOTE = ("note: this model's tokenizer has a chat template, and the prompts go in as "
              "plain text; chat: turns in the task (or --chat) sends them through it")


def turns(task: LoadedTask, prompt: Prompt, mode: str, templates: Templates
          ) -> list[dict[str, str]]:
    """The chat messages of one prompt (``mode``: turns or single)."""
    if mode == "single":
        return [{"role": "user", "content": prompt.text}]
    spec = task.spec
    pool = task.pool if task.pool is not None else task.items
    messages = []
    if spec.prompt.instruction:
        messages.append({"role": "system", "content": templates.render("prompt.instruction")})
    for j in prompt.examples:
        answers = templates.references(pool[j])
        if not answers:
            raise HarnessError(
                f"{task.path}: chat: turns writes each example's answer from target, which "
                "this task lacks; use chat: single or add target"
            )
        messages.append({"role": "user", "content": templates.render("prompt.query", pool[j])})
        messages.append({"role": "assistant", "content": answers[0]})
    messages.append({"role": "user", "content": templates.render("prompt.query",
                                                                 task.items[prompt.item])})
    return messages


def render(tokenizer: Any, messages: list[dict[str, str]], model: str,
           chat_args: dict[str, Any] | None = None) -> str:
    """The text the tokenizer's chat template makes of ``messages``, ready for the
    assistant's answer."""
    try:
        return _apply(tokenizer, messages, chat_args)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 (jinja2 errors, or the template's own raise)
        if messages[0]["role"] != "system":
            raise HarnessError(f"--model {model}: its chat template failed ({exc})") from None
    # templates that refuse a system turn: the instruction opens the first user turn
    system, first, *rest = messages
    merged = {"role": "user", "content": system["content"] + "\n\n" + first["content"]}
    try:
        return _apply(tokenizer, [merged, *rest], chat_args)
    except Exception as exc:  # noqa: BLE001
        raise HarnessError(f"--model {model}: its chat template failed ({exc})") from None


def _apply(tokenizer: Any, messages: list[dict[str, str]],
           chat_args: dict[str, Any] | None = None) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **(chat_args or {}))
    if not isinstance(text, str):
        raise HarnessError("the chat template did not give one text")
    return text


def check_template(tokenizer: Any, model: str) -> None:
    """Refuse, in one line, a model whose tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(
            f"--model {model}: its tokenizer has no chat template; run with chat: none "
            "(no --chat), or choose an instruct model"
        )


def templated(task: LoadedTask, prompts: list[Prompt], mode: str, tokenizer: Any,
              model: str, shots: list[int] | None = None,
              chat_args: dict[str, Any] | None = None) -> list[Prompt]:
    """The prompts with their text sent through the chat template (``mode`` turns or
    single; none leaves them as they are). ``chat_args`` go to the template
    (``enable_thinking: false``, ...)."""
    if mode == "none":
        return prompts
    check_template(tokenizer, model)
    templates = Templates(task, shots)
    return [
        dataclasses.replace(p, text=render(tokenizer, turns(task, p, mode, templates), model,
                                           chat_args))
        for p in prompts
    ]


# A prompt for a server that applies the chat template itself (``--backend openai``):
# its text is the messages as JSON, so that records, run.json and the cache key hold
# exactly what was sent, and the engine reads them back.
SERVER_MARK = '{"messages": '


def for_server(task: LoadedTask, prompts: list[Prompt], mode: str,
               shots: list[int] | None = None) -> list[Prompt]:
    """The prompts as chat messages for a server to template (``mode`` turns or single)."""
    if mode == "none":
        return prompts
    templates = Templates(task, shots)
    return [dataclasses.replace(p, text=server_text(turns(task, p, mode, templates)))
            for p in prompts]


def server_text(messages: list[dict[str, str]]) -> str:
    return json.dumps({"messages": messages}, ensure_ascii=False)


def server_messages(text: str) -> list[dict[str, str]] | None:
    """The messages of a prompt made by ``server_text``; None for a plain prompt."""
    if not text.startswith(SERVER_MARK):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    messages = value.get("messages") if isinstance(value, dict) and len(value) == 1 else None
    return messages if isinstance(messages, list) else None
