"""HTTP to a server that speaks the OpenAI API: many requests at once, retried where a
retry can help, every failure one line.

The requests run on an asyncio loop in a thread of its own (httpx's async client), so
that the caller, the runner on the main thread, receives each answer as it arrives and
Ctrl-C there stops everything at once: ``stream``'s iterator, closed, cancels whatever
is waiting or in flight.

What is retried: 429 and 5xx answers (waiting what ``Retry-After`` asks, else doubling
from half a second), and connections refused or dropped. What is not: a request that
took the whole timeout (it would take it again), and the answers that say the request
itself is wrong (400, 401, 403, 404, 422): those stop the run with the server's reason.
The key is sent as a bearer token and blotted out of anything said.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Coroutine, Generator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import HarnessError

RETRIED = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524}
MAX_WAIT = 30.0  # seconds: the longest pause between tries, whatever Retry-After says


def public_url(url: str) -> str:
    """``url`` without credentials (user:password@, a query string or fragment): what
    run.json, the cache and every message may show."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


class ServerError(HarnessError):
    """The server refused a request, or could not be reached: one line."""


class KeyRefused(ServerError):
    """The server refused the key (401, 403)."""


class Client:
    """Requests to one server, ``concurrency`` at a time, on a loop of its own."""

    def __init__(self, base_url: str, key: str | None, key_env: str, timeout: float,
                 retries: int, concurrency: int) -> None:
        import httpx

        self.url = public_url(base_url)
        self.key = key
        self.key_env = key_env
        self.retries = retries
        self.timeout = timeout
        self.concurrency = concurrency
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="harness-openai")
        self._thread.start()

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers,
                                     timeout=httpx.Timeout(timeout), limits=limits)

        self._http = self._call(make())

    # ---------------------------------------------------------------- one request

    def get(self, path: str, quiet: bool = False) -> Any:
        """GET ``path`` (relative to the base URL; "/x" from the server's root), tried
        once; None when ``quiet`` and it failed other than for the key."""
        try:
            return self._call(self._request("GET", path, None, retry=False))
        except KeyRefused:
            raise
        except ServerError:
            if quiet:
                return None
            raise

    def status(self, path: str) -> int | None:
        """The status a GET of ``path`` answers (None: no answer), tried once."""
        async def ask() -> int | None:
            try:
                response = await self._http.get(self._root(path) if path.startswith("/")
                                                else path)
            except Exception:  # noqa: BLE001 (no answer is an answer here)
                return None
            return response.status_code

        return self._call(ask())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call(self._request("POST", path, body))

    def stream(self, bodies: list[tuple[str, dict[str, Any]]]
               ) -> Generator[tuple[int, Any], None, None]:
        """(index, answer) of each (path, body), as they finish, ``concurrency`` in
        flight at once. The first failure is raised; closing the iterator (Ctrl-C)
        cancels every request not finished."""
        answers: queue.Queue[tuple[int, Any, BaseException | None]] = queue.Queue()
        gate: asyncio.Semaphore | None = None

        async def one(index: int, path: str, body: dict[str, Any]) -> None:
            assert gate is not None
            async with gate:
                try:
                    answers.put((index, await self._request("POST", path, body), None))
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                    answers.put((index, None, exc))

        async def every() -> None:
            nonlocal gate
            gate = asyncio.Semaphore(self.concurrency)
            await asyncio.gather(*(one(i, p, b) for i, (p, b) in enumerate(bodies)))

        running = asyncio.run_coroutine_threadsafe(every(), self._loop)
        try:
            for _ in bodies:
                while True:
                    try:
                        index, answer, error = answers.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if running.done() and running.exception() is not None:
                            raise running.exception()  # type: ignore[misc]
                if error is not None:
                    raise error
                yield index, answer
        finally:
            running.cancel()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._http.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()

    # ---------------------------------------------------------------- machinery

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _request(self, method: str, path: str, body: dict[str, Any] | None,
                       retry: bool = True) -> Any:
        import httpx

        where = self._where(path)
        tries = self.retries + 1 if retry else 1
        for attempt in range(tries):
            last = attempt == tries - 1
            try:
                url = self._root(path) if path.startswith("/") else path
                response = await self._http.request(method, url, json=body)
            except httpx.TimeoutException:
                raise ServerError(f"{where}: no answer within {self.timeout:g} s (the request "
                                  "timeout; a slow server needs a longer --timeout)") from None
            except (httpx.TransportError, OSError) as exc:
                if last:
                    raise ServerError(f"{where}: cannot reach the server "
                                      f"({self._hide(str(exc) or type(exc).__name__)}) after "
                                      f"{attempt + 1} tries") from None
                await asyncio.sleep(_backoff(attempt, None))
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise ServerError(f"{where}: the answer is not JSON "
                                      f"({self._hide(response.text[:120])!r})") from None
            if response.status_code in RETRIED and not last:
                await asyncio.sleep(_backoff(attempt, response.headers.get("retry-after")))
                continue
            error = KeyRefused if response.status_code in (401, 403) else ServerError
            raise error(self._refused(where, response, body, attempt + 1))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _root(self, path: str) -> str:
        """An absolute URL for a path from the server's root (/version, /tokenize)."""
        parts = urlsplit(str(self._http.base_url))
        root = parts.path.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        return urlunsplit((parts.scheme, parts.netloc, root + path, "", ""))

    def _where(self, path: str) -> str:
        if path.startswith("/"):
            base = self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url
            return base + path
        return f"{self.url}/{path}"

    def _refused(self, where: str, response: Any, body: dict[str, Any] | None,
                 tries: int) -> str:
        status = response.status_code
        reason = self._hide(_message(response))
        if status in (401, 403):
            key = (f"the key in ${self.key_env}" if self.key else
                   f"no key (${self.key_env} is not set)")
            return (f"{where}: the server refused {key} ({status}: {reason}); set "
                    f"{self.key_env} to a key it takes, or name another with --api-key-env")
        if status in RETRIED:
            return f"{where}: still answering {status} after {tries} tries ({reason})"
        named = _named_field(reason, body or {})
        if named:
            return (f"{where}: the server rejected {named}={body[named]!r} ({status}: "  # type: ignore[index]
                    f"{reason}); drop it from the decoding settings for this server")
        return f"{where}: the server refused the request ({status}: {reason})"

    def _hide(self, text: str) -> str:
        text = " ".join(str(text).split())[:300]
        if self.key:
            text = text.replace(self.key, "***")
        return text


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before the next try: what Retry-After asks (seconds), else 0.5 × 2^n."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), MAX_WAIT)
        except ValueError:
            pass  # an HTTP date: fall back to doubling
    return min(0.5 * 2**attempt, MAX_WAIT)


def _message(response: Any) -> str:
    """The reason an error answer gives: OpenAI's {"error": {"message"}}, FastAPI's
    {"detail"}, or the text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)
    return str(data)[:200]


# Fields a server may reject as unknown, looked for (in this order) in its reason.
OPTIONAL_FIELDS = ("top_k", "min_p", "repetition_penalty", "repeat_penalty", "bad_words",
                   "min_tokens", "prompt_logprobs", "thinking_token_budget",
                   "chat_template_kwargs", "include_stop_str_in_output", "logprobs",
                   "top_logprobs", "echo", "seed", "n", "stop", "top_p", "temperature",
                   "max_tokens")


def _named_field(reason: str, body: dict[str, Any]) -> str | None:
    """The request field a rejection names, where it names one of those sent."""
    import re

    for name in OPTIONAL_FIELDS:
        if name in body and re.search(rf"(?<![A-Za-z_]){name}(?![A-Za-z_])", reason):
            return name
    return None

