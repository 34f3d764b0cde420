"""Reading and writing the IDX format that MNIST and Fashion-MNIST ship in.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimension sizes, then the data in row-major order, big-endian. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import torch

from lit_deep._io import atomic_write

__all__ = ["IDXError", "read_idx", "write_idx"]

# IDX dtype code -> numpy dtype (big-endian, as the format stores it).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TORCH_TO_CODE: dict[torch.dtype, int] = {
    torch.uint8: 0x08,
    torch.int8: 0x09,
    torch.int16: 0x0B,
    torch.int32: 0x0C,
    torch.float32: 0x0D,
    torch.float64: 0x0E,
}
_NUMPY_TO_TORCH: dict[str, torch.dtype] = {
    "u1": torch.uint8,
    "i1": torch.int8,
    "i2": torch.int16,
    "i4": torch.int32,
    "f4": torch.float32,
    "f8": torch.float64,
}


class IDXError(ValueError):
    """An IDX file is truncated, corrupted or does not match what was expected."""


#: Bytes inflated per step while reading a gzip-compressed IDX file.
_STEP = 1 << 20


def _read_exactly(stream: IO[bytes] | gzip.GzipFile, count: int) -> bytes:
    """Up to ``count`` bytes of ``stream``, in steps of at most ``_STEP`` (never one allocation of ``count``)."""
    out = bytearray()
    while len(out) < count:
        piece = stream.read(min(_STEP, count - len(out)))
        if not piece:
            break
        out += piece
    return bytes(out)


def _declared_size(head: bytes, source: str) -> int | None:
    """Header plus data bytes the IDX header ``head`` declares; ``None`` while ``head`` is too short to tell."""
    if len(head) < 4:
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim or head[2] not in _CODE_TO_DTYPE:
        return None  # parse_idx names the problem
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    return 4 + 4 * ndim + math.prod(dims) * _CODE_TO_DTYPE[head[2]].itemsize


def read_gzip_idx(stream: IO[bytes], source: str) -> bytes:
    r"""The IDX bytes of a gzip stream, inflating no more than its header declares (plus one byte).

    The header is read first; a stream holding more data than declared (a "gzip bomb" whose header says one
    item) is refused after inflating one byte too many, and work and memory stay bounded by the declared size.

    Args:
        stream: the compressed file, open for binary reading.
        source: a name for error messages.

    Returns:
        The uncompressed bytes (header and data), to give to :func:`parse_idx`.

    Raises:
        IDXError: naming ``source``, for a truncated or corrupted stream or more data than declared.

    Example::

        >>> import io
        >>> bomb = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1]) + bytes(10**6))
        >>> try:
        ...     read_gzip_idx(io.BytesIO(bomb), "bomb.gz")
        ... except IDXError as err:
        ...     print(err)
        bomb.gz: file is corrupted: dimensions (1,) need 1 data bytes, the gzip stream holds more
    """
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as inflated:
            head = _read_exactly(inflated, 4)
            if len(head) == 4:
                head += _read_exactly(inflated, 4 * head[3])
            declared = _declared_size(head, source)
            if declared is None:
                return head
            data = head + _read_exactly(inflated, declared + 1 - len(head))
    except (OSError, EOFError, zlib.error) as err:
        raise IDXError(f"{source}: the gzip stream is truncated or corrupted ({err})") from err
    if len(data) > declared:
        ndim = head[3]
        dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
        raise IDXError(
            f"{source}: file is corrupted: dimensions {dims} need {declared - len(head)} data bytes, "
            "the gzip stream holds more"
        )
    return data


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            fh.seek(0)
            return read_gzip_idx(fh, str(path))
        fh.seek(0)
        return fh.read()


def parse_idx(data: bytes, source: str = "<bytes>") -> torch.Tensor:
    r"""Parse the bytes of an (uncompressed) IDX file.

    Args:
        data: the file's bytes.
        source: a name for error messages.

    Returns:
        A tensor with the file's shape and dtype.

    Raises:
        IDXError: if the magic number, dtype code or size is wrong.

    Example::

        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
        [7, 9]
        >>> try:
        ...     parse_idx(bytes([0, 0, 8, 4]) + b"\xff" * 16, "huge.idx")
        ... except IDXError as err:
        ...     print(str(err).split(" need")[0])
        huge.idx: file is truncated: dimensions (4294967295, 4294967295, 4294967295, 4294967295)
    """
    if len(data) < 4:
        raise IDXError(f"{source}: file is truncated: {len(data)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise IDXError(f"{source}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes")
    if code not in _CODE_TO_DTYPE:
        raise IDXError(f"{source}: unknown dtype code 0x{code:02x} in the magic number (known: 08 09 0b 0c 0d 0e)")
    if ndim == 0:
        raise IDXError(f"{source}: the magic number declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{source}: file is truncated inside the header ({len(data)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _CODE_TO_DTYPE[code]
    # Exact integer arithmetic: a tampered header with huge dimensions must not wrap around an int64.
    expected = math.prod(dims) * dtype.itemsize
    body = len(data) - header
    if body < expected:
        raise IDXError(f"{source}: file is truncated: dimensions {dims} need {expected} data bytes, found {body}")
    if body > expected:
        raise IDXError(f"{source}: file is corrupted: dimensions {dims} need {expected} data bytes, found {body}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    native = array.astype(dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(native).to(_NUMPY_TO_TORCH[dtype.str[1:]])


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file, raw or gzip-compressed.

    Args:
        path: the file to read.

    Returns:
        A tensor with the shape stored in the header (uint8 images are ``[N, H, W]``, labels ``[N]``).

    Raises:
        FileNotFoundError: if the file does not exist.
        IDXError: if the file is truncated or corrupted; the message names the file.

    Example::

        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/labels.gz"
        >>> write_idx(path, torch.tensor([3, 1, 4], dtype=torch.uint8))
        >>> read_idx(path).tolist()
        [3, 1, 4]
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def encode_idx(tensor: torch.Tensor) -> bytes:
    """Encode a tensor as IDX bytes (uncompressed).

    Args:
        tensor: a tensor of dtype uint8, int8, int16, int32, float32 or float64 with at least one dimension.

    Returns:
        The IDX file's bytes.

    Raises:
        ValueError: for an unsupported dtype or a 0-dimensional tensor.

    Example::

        >>> encode_idx(torch.tensor([1, 2], dtype=torch.uint8)).hex()
        '00000801000000020102'
    """
    if tensor.dtype not in _TORCH_TO_CODE:
        raise ValueError(f"tensor: dtype {tensor.dtype} cannot be stored in IDX (use one of {list(_TORCH_TO_CODE)})")
    if tensor.dim() == 0 or tensor.dim() > 255:
        raise ValueError(f"tensor: IDX needs 1 to 255 dimensions, got shape {tuple(tensor.shape)}")
    code = _TORCH_TO_CODE[tensor.dtype]
    header = bytes([0, 0, code, tensor.dim()]) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    array = tensor.detach().cpu().contiguous().numpy()
    return header + array.astype(_CODE_TO_DTYPE[code], copy=False).tobytes()


def write_idx(path: str | os.PathLike[str], tensor: torch.Tensor, compress: bool | None = None) -> None:
    """Write a tensor as an IDX file, atomically (a temporary file renamed into place).

    Args:
        path: the destination; gzip-compressed when it ends in ``.gz`` unless ``compress`` says otherwise.
        tensor: the data (see :func:`encode_idx` for the allowed dtypes).
        compress: force or forbid gzip compression.

    Example::

        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/images"
        >>> write_idx(path, torch.zeros(2, 3, 3, dtype=torch.uint8))
        >>> tuple(read_idx(path).shape)
        (2, 3, 3)
    """
    path = Path(path)
    data = encode_idx(tensor)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write(path, data)
