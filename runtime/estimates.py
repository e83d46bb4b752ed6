"""Time estimates from speeds measured on this machine, and the one duration format.

Long work (embedding texts, fine-tuning, predicting) records how fast it went with
:func:`record_speed`; pages and the CLI ask :func:`estimate_seconds` how long the next run will
take, and get the measured rate when there is one, else the caller's default (a rough figure
for a typical machine). Speeds are kept per task, model identity, device and precision in a
small JSON file (:func:`speeds_path`), per machine: a workspace home copied to another computer
(or shared over a network) never lends it this machine's speeds.

The file is a cache, never a source of truth: missing, unreadable or damaged, it reads as empty
and every estimate falls back to its default; a failed write is skipped.

:func:`duration` is how every page and the CLI print a number of seconds.

Examples
--------
>>> duration(3), duration(61), duration(3 * 3600 + 20 * 60)
('3 s', '1 min 1 s', '3 h 20 min')
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import socket
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Tasks whose speeds are kept, and their units.
TASKS = {"embed": "texts", "train": "samples", "predict": "texts"}
# Measurements shorter than this, or over fewer units, are dominated by start-up (loading the
# model, the first batch's kernel set-up) and are not recorded.
MIN_SECONDS = 3.0
MIN_UNITS = 200
# Weight of a new measurement in the running (exponential moving) average: recent runs count
# most, since the machine's load changes, while one odd run moves the estimate only halfway.
BLEND = 0.5
SPEEDS_FILE = ".speeds.json"
_VERSION = 1


def speeds_path() -> Path:
    """Where speeds are kept: ``$SECOND_LOOK_SPEEDS``, else ``.speeds.json`` in the workspaces
    home (``$SECOND_LOOK_HOME`` or ``./workspaces``; a file, so never listed as a workspace)."""
    override = os.environ.get("SECOND_LOOK_SPEEDS")
    if override:
        return Path(override).expanduser()
    from data.store.base import workspaces_root

    return workspaces_root() / SPEEDS_FILE


@functools.cache
def machine_fingerprint() -> str:
    """This machine: host name, CPU count, CPU model and GPU name (when torch sees one)."""
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch or no driver: a CPU-only machine
        gpu = ""
    return "|".join([socket.gethostname(), str(os.cpu_count() or 0), _cpu_model(), gpu])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(task: str, model: str, device: str, precision: str) -> str:
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; valid: {', '.join(TASKS)}.")
    return f"{task}|{model}|{device}|{precision}"


def _read() -> dict[str, Any]:
    """The whole file, or an empty store when it is missing or damaged."""
    try:
        data = json.loads(speeds_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": _VERSION, "machines": {}}
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        return {"version": _VERSION, "machines": {}}
    return data


def _write(data: dict[str, Any]) -> bool:
    """Replace the file atomically (a temporary file renamed over it); False when it failed."""
    path = speeds_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".speeds-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def measured_speed(task: str, *, model: str, device: str, precision: str) -> float | None:
    """The rate measured on this machine (units per second), or ``None`` when there is none."""
    key = _key(task, model, device, precision)
    entry = _read()["machines"].get(machine_fingerprint())
    entry = entry.get(key) if isinstance(entry, dict) else None
    rate = entry.get("rate") if isinstance(entry, dict) else None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        return None
    return float(rate) if math.isfinite(rate) and rate > 0 else None


def speed(task: str, *, model: str, device: str, precision: str, default: float) -> float:
    """The measured rate of ``task`` on this machine, else ``default`` (units per second)."""
    rate = measured_speed(task, model=model, device=device, precision=precision)
    return default if rate is None else rate


def record_speed(
    task: str, units: float, seconds: float, *, model: str, device: str, precision: str
) -> float | None:
    """Record that ``units`` of ``task`` took ``seconds``; return the blended rate.

    The rate is blended into the previous measurement (weight :data:`BLEND` for the new one).
    Samples under :data:`MIN_SECONDS` or :data:`MIN_UNITS`, dominated by start-up, are ignored
    (``None``). Never raises for a file problem: a speed that cannot be saved is dropped.
    """
    key = _key(task, model, device, precision)
    try:
        units, seconds = float(units), float(seconds)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(units) and math.isfinite(seconds)):
        return None
    if seconds < MIN_SECONDS or units < MIN_UNITS:
        return None
    rate = units / seconds
    data = _read()
    machines = data["machines"]
    mine = machines.get(machine_fingerprint())
    if not isinstance(mine, dict):
        mine = machines[machine_fingerprint()] = {}
    old = mine.get(key) if isinstance(mine.get(key), dict) else {}
    previous = old.get("rate")
    if isinstance(previous, (int, float)) and math.isfinite(previous) and previous > 0:
        rate = BLEND * rate + (1 - BLEND) * float(previous)
    count = old.get("count") if isinstance(old.get("count"), int) else 0
    mine[key] = {
        "rate": round(rate, 3),
        "count": count + 1,
        "last_units": units,
        "last_seconds": round(seconds, 3),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    data["version"] = _VERSION
    _write(data)
    return round(rate, 3)


def estimate_seconds(
    task: str,
    units: float,
    *,
    model: str,
    device: str,
    precision: str,
    default_rate: float,
    overhead_seconds: float = 0.0,
) -> float:
    """Seconds ``units`` of ``task`` should take here: at the measured rate, else at
    ``default_rate``, plus ``overhead_seconds`` (loading a model, saving it): 1,000 texts at
    a default of 100 texts/s with 2 s overhead are 12 s until this machine has measured its
    own rate.
    """
    if not (isinstance(default_rate, (int, float)) and default_rate > 0):
        raise ValueError(f"default_rate must be a positive number, got {default_rate!r}.")
    rate = speed(task, model=model, device=device, precision=precision, default=default_rate)
    return max(0.0, float(units)) / rate + overhead_seconds


def duration(seconds: float) -> str:
    """A number of seconds as people say it: ``"0.4 s"``, ``"3 s"``, ``"59 s"``,
    ``"1 min 1 s"``, ``"42 min"``, ``"1 h 5 min"``, ``"2 d 3 h"``.

    Tenths below 10 s, whole seconds below a minute, minutes and seconds below 10 min, then
    two units at most; each rounded to its smallest unit (3599.7 s is ``"1 h"``).

    Examples
    --------
    >>> [duration(s) for s in (0.4, 3, 59, 61, 3600, 2 * 86400 + 3 * 3600)]
    ['0.4 s', '3 s', '59 s', '1 min 1 s', '1 h', '2 d 3 h']
    """
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return "?"
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds < 9.95:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    if seconds < 599.5:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h" + (f" {rest} min" if rest else "")
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d" + (f" {hours} h" if hours else "")
