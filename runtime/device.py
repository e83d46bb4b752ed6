"""Where and in which number format to run: shared by the encoder, detection and training.

``auto`` picks the GPU when torch sees one. Precision ``auto`` is bf16 on a GPU that supports
it (fp16 otherwise) and, on a CPU, bf16 autocast only where the CPU has native bf16 instructions
(AVX512-BF16 or AMX): there it is ~1.5x faster for training and ~1.7x for inference, elsewhere
oneDNN emulates bf16 and it is slower than fp32.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from runtime.validation import choice

DEVICES = ("auto", "cpu", "cuda")
# fp16 only exists on CUDA; resolve_precision says so when it is asked for on the CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(device: str) -> str:
    """Return ``"cuda"`` or ``"cpu"`` for a device choice (``auto`` picks the GPU if visible).

    Raises ``ValueError`` for an unknown choice, or for ``"cuda"`` when torch sees no GPU.
    """
    import torch

    device = choice("device", device, DEVICES)
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device == "cuda" and not has_cuda:
        raise ValueError(
            "device='cuda' was asked for but torch sees no CUDA GPU (CPU-only torch build or no "
            "driver); use device='auto' or 'cpu'."
        )
    return device


def resolve_precision(precision: str, device: str) -> str:
    """Return ``"fp32"``, ``"bf16"`` or ``"fp16"`` for a precision choice on a resolved device.

    ``auto`` means bf16 on a GPU that supports it (fp16 otherwise), and on the CPU bf16 only
    when the CPU has native bf16 instructions (AVX512-BF16 or AMX): there bf16 autocast trains
    faster, elsewhere it is emulated and slower than fp32.
    """
    import torch

    precision = choice("precision", precision, PRECISIONS)
    device = choice("device", device, ("cpu", "cuda"))
    if device == "cuda":
        bf16_ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if precision == "auto":
            return "bf16" if bf16_ok else "fp16"
        if precision == "bf16" and not bf16_ok:
            raise ValueError(
                "precision='bf16' is not supported by this GPU; use 'fp16', 'fp32' or 'auto'."
            )
        return precision
    if precision == "fp16":
        raise ValueError(
            "precision='fp16' needs a CUDA GPU; on the CPU use 'bf16', 'fp32' or 'auto'."
        )
    if precision == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return precision


@functools.cache
def cpu_has_native_bf16() -> bool:
    import torch

    # These are private torch helpers; if they move, fall back to the always-safe fp32.
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def autocast_dtype(precision: str) -> Any:
    """The torch autocast dtype for a resolved precision, or ``None`` for plain fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (accelerate / torchrun).

    Read from the launcher's environment (``RANK``), so it is right before the process group
    is initialised too. Only the main process writes to the store and saves the model.
    """
    return int(os.environ.get("RANK", "0") or 0) == 0


def world_size() -> int:
    """Number of processes of a distributed launch (1 when not distributed)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
