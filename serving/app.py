"""The HTTP face of a trained classifier: FastAPI app, request checks, and the uvicorn server.

Endpoints (all answer JSON):

- ``POST /predict`` with ``{"texts": ["...", ...]}`` (``Content-Type: application/json``):
  ``{"labels": [...], "predictions": [{"label": "...", "probabilities": {label: p, ...}}]}``,
  one prediction per text in the order sent, probabilities in the model's class order (the
  order of ``labels``; they sum to 1);
- ``GET /health``: ``{"status": "ok", "model_loaded": true, ...}``;
- ``GET /model``: labels, base model, training config and facts, data version, metrics and the
  server's limits (see :mod:`serving.model`).

A bad request gets a 4xx answer ``{"error": "<what is wrong and how to fix it>", "problem":
"<code>"}``; the codes are :data:`PROBLEMS`. Texts are only ever tokenized: never executed,
rendered or logged, and never echoed back (answers carry labels and probabilities only).
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from data.home import is_loopback
from runtime.validation import positive_int
from serving import DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS
from serving.model import ServedModel, json_ready, load_served_model

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_TEXTS",
    "PROBLEMS",
    "BadRequest",
    "Limits",
    "ServeError",
    "create_app",
    "parse_texts",
    "prediction_body",
    "serve",
]

log = logging.getLogger(__name__)


# problem code -> HTTP status
PROBLEMS = {
    "bad_content_type": 415,
    "body_too_large": 413,
    "not_json": 400,
    "not_object": 400,
    "texts_missing": 400,
    "unknown_fields": 400,
    "texts_not_list": 400,
    "texts_empty": 400,
    "too_many_texts": 413,
    "text_not_string": 400,
    "text_too_long": 413,
    "invalid_unicode": 400,
}
EXAMPLE = '{"texts": ["I love it", "not for me"]}'
JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
SAFE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


class ServeError(Exception):
    """The server cannot start (e.g. the port is taken); the message says what to change."""


class BadRequest(Exception):
    """A request body the server rejects: ``problem`` is a key of :data:`PROBLEMS`."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem, self.message, self.status = problem, message, PROBLEMS[problem]


@dataclass(frozen=True)
class Limits:
    """Most texts per request and most characters per text (``--max-texts``, ``--max-chars``)."""

    max_texts: int = DEFAULT_MAX_TEXTS
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_texts", positive_int("max_texts", self.max_texts))
        object.__setattr__(self, "max_chars", positive_int("max_chars", self.max_chars))

    @property
    def max_body_bytes(self) -> int:
        # Every character may arrive JSON-escaped: up to 12 bytes (a surrogate pair, \\uXXXX x2).
        return self.max_texts * (12 * self.max_chars + 8) + 4096


def _json_type(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a ``/predict`` body, or a :class:`BadRequest` naming the first problem.

    The messages name positions, types and sizes, never the texts themselves.
    """
    try:
        payload = json.loads(body)
    except RecursionError:
        raise BadRequest(
            "not_json", "The body is not JSON we accept: it nests too deeply."
        ) from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        if isinstance(exc, json.JSONDecodeError):
            reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        else:
            reason = "not UTF-8 text"
        raise BadRequest(
            "not_json",
            f"The body is not JSON ({reason}); send {EXAMPLE} with Content-Type: application/json.",
        ) from None
    if not isinstance(payload, dict):
        raise BadRequest(
            "not_object",
            f"The body is {_json_type(payload)}, not a JSON object; send {EXAMPLE}.",
        )
    if "texts" not in payload:
        raise BadRequest("texts_missing", f'The body has no "texts" field; send {EXAMPLE}.')
    if len(payload) > 1:
        raise BadRequest(
            "unknown_fields",
            f'The body has {len(payload) - 1} field(s) besides "texts"; only "texts" is read. '
            f"Send {EXAMPLE}.",
        )
    texts = payload["texts"]
    if not isinstance(texts, list):
        hint = ' wrap one text in a list: {"texts": ["..."]}' if isinstance(texts, str) else ""
        raise BadRequest(
            "texts_not_list",
            f'"texts" is {_json_type(texts)}, not a list of strings;{hint or " send " + EXAMPLE}.',
        )
    if not texts:
        raise BadRequest("texts_empty", '"texts" is an empty list; send at least one text.')
    if len(texts) > limits.max_texts:
        raise BadRequest(
            "too_many_texts",
            f'"texts" has {len(texts):,} items; at most {limits.max_texts:,} per request. Split '
            "them over several requests (or start the server with a larger --max-texts).",
        )
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise BadRequest(
            "text_not_string",
            f'"texts"[{bad[0]}] is {_json_type(texts[bad[0]])}, not a string ({len(bad):,} such '
            f"item{'' if len(bad) == 1 else 's'}); every text must be a JSON string.",
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            raise BadRequest(
                "text_too_long",
                f'"texts"[{i}] has {len(text):,} characters; at most {limits.max_chars:,} per '
                "text (the model reads only the start of a text anyway). Shorten it (or start "
                "the server with a larger --max-chars).",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(
                "invalid_unicode",
                f'"texts"[{i}] is not valid Unicode: it holds a lone surrogate (\\ud800-\\udfff '
                "without its pair).",
            ) from None
    return texts


def prediction_body(labels: list[str], probs: Any) -> dict[str, Any]:
    """``{"labels", "predictions"}`` for a ``(n, K)`` probability array in label order."""
    rows = probs.tolist()
    predictions = []
    for row in rows:
        best = max(range(len(row)), key=row.__getitem__)
        predictions.append(
            {"label": labels[best], "probabilities": dict(zip(labels, row, strict=True))}
        )
    return {"labels": labels, "predictions": predictions}


class _SafeHeaders:
    """ASGI middleware: every answer says it is not to be sniffed, framed, or cached."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SAFE_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BearerToken:
    """ASGI middleware: with a token set, every endpoint but /health needs
    ``Authorization: Bearer <token>`` (compared in constant time); else a 401 JSON error."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") == "/health":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "error": "This server needs its token: send the header "
                "'Authorization: Bearer <token>' (the token its operator set with --token-file).",
                "problem": "unauthorized",
            },
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def create_app(
    served: ServedModel, limits: Limits | None = None, *, token: str | None = None
) -> FastAPI:
    """The FastAPI app answering for ``served`` (already loaded: see
    :func:`serving.model.load_served_model`). With ``token``, requests other than
    ``GET /health`` must carry it as a bearer token."""
    limits = limits or Limits()
    # No /docs, /redoc or /openapi.json: the README documents the three endpoints.
    app = FastAPI(title="Second Look classifier", docs_url=None, redoc_url=None, openapi_url=None)
    if token is not None:
        app.add_middleware(_BearerToken, token=check_token(token))
    app.add_middleware(_SafeHeaders)  # added last: it wraps the 401 answers too
    model_body = json_ready(
        {
            **served.info,
            "max_length": served.max_length,
            "batch_size": served.batch_size,
            "device": served.device,
            "precision": served.precision,
            "limits": {"max_texts": limits.max_texts, "max_chars": limits.max_chars},
        }
    )

    def error(status: int, problem: str, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "problem": problem}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {
            404: "No such endpoint; use POST /predict, GET /health or GET /model.",
            405: "Wrong method; use POST /predict, GET /health or GET /model.",
        }.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, problem, message)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_loaded": True, "labels": len(served.labels)}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return model_body

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        try:
            _check_content_type(request.headers.get("content-type", ""))
            body = await _read_body(request, limits.max_body_bytes)
            texts = parse_texts(body, limits)
        except BadRequest as exc:
            return error(exc.status, exc.problem, exc.message)
        try:
            probs = await run_in_threadpool(served.predict, texts)
        except Exception:
            log.exception("prediction failed for a request of %d texts", len(texts))
            return error(500, "prediction_failed", "The model failed on this request; see the log.")
        if not np.isfinite(probs).all():
            return error(500, "prediction_failed", "The model gave non-finite probabilities.")
        return JSONResponse(prediction_body(served.labels, probs))

    return app


def _check_content_type(value: str) -> None:
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise BadRequest(
            "bad_content_type",
            f"Send the body as JSON with Content-Type: application/json (got "
            f"{media[:60] or 'no Content-Type'!r}).",
        )


async def _read_body(request: Any, cap: int) -> bytes:
    """The body, or ``body_too_large`` as soon as it (or its Content-Length) passes ``cap``."""
    too_large = BadRequest(
        "body_too_large",
        f"The body is larger than {cap:,} bytes, more than the limits allow (--max-texts, "
        "--max-chars); send fewer or shorter texts per request.",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


MIN_TOKEN_CHARS = 16


def check_token(token: str) -> str:
    """A bearer token long enough not to be guessed (ASCII, no spaces); else ``ValueError``."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"The serving token is too short: use at least {MIN_TOKEN_CHARS} characters "
            "(e.g. `openssl rand -hex 32 > token.txt`)."
        )
    if not token.isascii() or any(ch.isspace() for ch in token):
        raise ValueError("The serving token must be ASCII without spaces or line breaks.")
    return token


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), or a :class:`ServeError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServeError(f"Cannot listen on {host}:{port}: {exc}; check --host.") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(or stop what uses it)."
        ) from exc
    return sock


def serve(
    model_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 64,
    max_length: int | None = None,
    threads: int | None = None,
    log_level: str = "info",
    token: str | None = None,
) -> int:
    """Load the model (failing at once if it cannot be), then answer on ``host:port`` until
    interrupted. Raises :class:`serving.model.ModelLoadError`, :class:`ServeError` or
    ``ValueError`` (bad settings) before serving anything.

    Off the loopback address a ``token`` is required (every request but ``GET /health`` must
    carry it), as the app needs accounts there: anyone who can reach the port could otherwise
    use the model and read what ``GET /model`` tells about its training."""
    import uvicorn

    limits = limits or Limits()
    if token is None and not is_loopback(host):
        raise ServeError(
            f"Serving on {host} without a token would answer anyone who can reach this machine. "
            "Give a token (--token-file FILE, or SECOND_LOOK_SERVE_TOKEN), or serve on "
            "127.0.0.1 behind your own proxy."
        )
    if token is not None:
        check_token(token)
    if threads is not None:
        import torch

        # On a busy machine one thread per server can be faster than torch's default (one per
        # core): threads that wait for each other's cores stall every forward pass.
        torch.set_num_threads(positive_int("threads", threads))
    sock = listen(host, port)  # a taken port fails before the slow part
    try:
        served = load_served_model(
            model_dir,
            device=device,
            precision=precision,
            batch_size=batch_size,
            max_length=max_length,
        )
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    print(
        f"serve: {served.describe()}, at most {limits.max_texts:,} texts of "
        f"{limits.max_chars:,} characters per request\n"
        f"serve: listening on http://{where}:{bound} (POST /predict, GET /health, GET /model)",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(served, limits, token=token),
        log_level=log_level,
        server_header=False,
        date_header=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
