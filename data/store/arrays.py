"""Row-chunked ``.npy`` files: write an ``(n, d)`` array a block of rows at a time, read any
range of rows back, without ever holding (or memory-mapping) the whole array.

Why not ``np.save`` / ``np.load(mmap_mode="r")``: the first needs the whole array in memory,
and the pages a memory map touches count towards the process's resident memory until the
kernel reclaims them, so a pass over a 2.8 GB map looks like 2.8 GB of memory. Plain reads at
an offset go through the page cache instead and cost only the block being read.

The files are ordinary ``.npy`` files: ``np.load`` opens them too.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np


class NpyWriter:
    """Write an ``(rows, d)`` ``.npy`` file block by block; it appears at ``path`` on close.

    ``d`` is taken from the first block. The file is written next to ``path`` and renamed
    into place only when all ``rows`` rows were written, so a reader never sees half a file.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.npy"
    >>> with NpyWriter(path, rows=3, dtype=np.float32) as w:
    ...     w.write(np.ones((2, 4)))
    ...     w.write(np.zeros((1, 4)))
    >>> NpyRows(path)[1:3].tolist()
    [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        rows: int,
        dtype: Any = np.float32,
        on_close: Any = None,
    ) -> None:
        self.path = Path(path)
        self.rows = int(rows)
        self.dtype = np.dtype(dtype)
        self.written = 0
        # Called with the path once the complete file is in place (the store records its
        # checksum).
        self.on_close = on_close
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._file: Any = None
        # The file's SHA-256 and size, taken as it is written (the store records them without
        # reading the file back).
        self._digest = hashlib.sha256()
        self.bytes = 0

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, block: np.ndarray) -> None:
        """Append rows (cast to the file's dtype)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.ndim != 2:
            raise ValueError(f"blocks must be 2-D (rows x columns), got shape {block.shape}.")
        if self._file is None:
            self._open(block.shape[1])
        if block.shape[1] != self.columns:
            raise ValueError(f"block has {block.shape[1]} columns, the file {self.columns}.")
        if self.written + len(block) > self.rows:
            raise ValueError(f"more than the {self.rows} rows announced were written.")
        self._put(block.tobytes())
        self.written += len(block)

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of what was written so far (of the whole file once closed)."""
        return self._digest.hexdigest()

    def _put(self, data: bytes) -> None:
        self._file.write(data)
        self._digest.update(data)
        self.bytes += len(data)

    def close(self) -> None:
        """Check the row count and move the file into place."""
        if self._file is None:
            if self.rows:
                raise ValueError("no rows were written.")
            self._open(0)
        self._file.close()
        if self.written != self.rows:
            self._tmp.unlink(missing_ok=True)
            raise ValueError(f"{self.written} rows were written, {self.rows} announced.")
        os.replace(self._tmp, self.path)
        if self.on_close is not None:
            self.on_close(self.path)

    def abort(self) -> None:
        """Drop the partial file (after an error or a cancel)."""
        if self._file is not None:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def _open(self, columns: int) -> None:
        self.columns = int(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed by close()/abort()
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, self.columns),
        }
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, header)
        self._put(head.getvalue())


class NpyRows:
    """Read-only rows of a 2-D C-order ``.npy`` file: ``rows[a:b]`` reads just those rows.

    Has ``shape``, ``dtype``, ``ndim`` and ``len()``, so the chunked code in
    :mod:`curation.methods` takes it wherever it takes an array.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{self.path} is not a 2-D C-order numeric array.")
        expected = self._offset + shape[0] * shape[1] * dtype.itemsize
        if self.path.stat().st_size != expected:
            raise ValueError(f"{self.path} is truncated.")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("NpyRows reads contiguous row ranges only: rows[a:b].")
        start, stop, _ = rows.indices(self.shape[0])
        count = max(0, stop - start)
        offset = self._offset + start * self.shape[1] * self.dtype.itemsize
        block = np.fromfile(self.path, dtype=self.dtype, count=count * self.shape[1], offset=offset)
        return block.reshape(count, self.shape[1])

    def take(self, rows: Any, *, max_gap: int = 64) -> np.ndarray:
        """The given rows (any order, repeats allowed), in that order.

        Rows are read in ascending runs: rows at most ``max_gap`` apart share one read (the
        rows between are read and dropped), so a few scattered rows of a large file cost a
        few small reads and a dense set costs about one sequential read.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"rows out of range 0..{self.shape[0] - 1} of {self.path}.")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) > max_gap) + 1
        for run in np.split(np.arange(len(ordered)), breaks):
            first, last = int(ordered[run[0]]), int(ordered[run[-1]])
            block = self[first : last + 1]
            out[order[run]] = block[ordered[run] - first]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole array (for small files and tests: this is the one full read)."""
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)
