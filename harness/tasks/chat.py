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
so the answer starts where the prompt ends. A template that refuses a system turn, or
silently drops it (several instruct models' templates do), gets the instruction at the
top of the first user turn instead. Templates are rendered within the sandbox's bounds. The templated text
is the prompt: ``preview`` shows it, the records and run.json keep it, and it is
tokenized as transformers tokenizes templated text (``tokens.prompt_ids``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.errors import HarnessError
from harness.tasks import sandbox
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
        answers = templates.references(pool[j], f"example {j + 1} of the pool",
                                       templates.choices(pool[j], j + 1))
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


def render(tokenizer: Any, messages: list[dict[str, str]], model: str) -> str:
    """The text the tokenizer's chat template makes of ``messages``, ready for the
    assistant's answer.

    The template is rendered in the harness's bounded sandbox (``sandbox.CHAT_ENV``), not
    by transformers: a model folder's template is as untrusted as a task file, and a loop
    of 10^10 steps or a gigabyte of output ends in one line. A template that refuses a
    system turn, or drops it (the instruction is nowhere in what it renders), gets the
    instruction at the top of the first user turn instead.
    """
    where = f"--model {model}: its chat template"
    compiled = sandbox.compile_chat_template(_source(tokenizer, where), where)
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    try:
        text = _apply(compiled, tokenizer, messages, where)
        if system is None or system.strip() in text:
            return text
    except HarnessError:
        if system is None:
            raise
    first, *rest = messages[1:]
    merged = {"role": "user", "content": system + "\n\n" + first["content"]}
    return _apply(compiled, tokenizer, [merged, *rest], where)


def _source(tokenizer: Any, where: str) -> str:
    """The template's text (a tokenizer may hold several by name: its "default")."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default")
    if not isinstance(template, str):
        raise HarnessError(f"{where}: the tokenizer names several and none is 'default'; "
                           "run with chat: none")
    return template


def _apply(compiled: sandbox.Compiled, tokenizer: Any, messages: list[dict[str, str]],
           where: str) -> str:
    special = getattr(tokenizer, "special_tokens_map", None) or {}
    context = {**special, "messages": messages, "tools": None, "documents": None,
               "add_generation_prompt": True}
    text = sandbox.render(compiled, context, where)
    if not text.strip():
        raise HarnessError(f"{where} renders nothing for a prompt; run with chat: none, or "
                           "fix the template in the model's tokenizer_config.json")
    return text


def check_template(tokenizer: Any, model: str) -> None:
    """Refuse, in one line, a model whose tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise HarnessError(
            f"--model {model}: its tokenizer has no chat template; run with chat: none "
            "(no --chat), or choose an instruct model"
        )


def templated(task: LoadedTask, prompts: list[Prompt], mode: str, tokenizer: Any,
              model: str, shots: list[int] | None = None) -> list[Prompt]:
    """The prompts with their text sent through the chat template (``mode`` turns or
    single; none leaves them as they are)."""
    if mode == "none":
        return prompts
    check_template(tokenizer, model)
    templates = Templates(task, shots)
    return [
        dataclasses.replace(p, text=render(tokenizer, turns(task, p, mode, templates), model))
        for p in prompts
    ]
