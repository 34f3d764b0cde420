"""The CPU fast path of the keyed dropout masks: ``_masks.c``, compiled on first use, loaded with :mod:`ctypes`.

Why: drawn with torch ops, a keyed mask costs about 12 passes over ``int64`` tensors per 64-bit word (SplitMix64
in eager mode) plus two passes to threshold and apply it; on a 2-core CPU that is ~2.6 ns per mask element, which
made MC dropout before every layer cost 2.1x the time of plain eval passes. The C kernel hashes a block of
words in registers (vectorised where the CPU has AVX-512's 64-bit multiply), then thresholds and applies the
mask in the same pass: ~0.45 ns per element, the same bits (``tests/uncertainty/test_native_masks.py``).

When: CPU tensors of float32 or float64 in :meth:`~lit_deep.uncertainty._masks.MaskSampler.dropout`. Other
devices (CUDA draws the masks with the torch ops, which a GPU runs at memory speed), other dtypes and channel
masks keep the torch path, whose masks are identical.

How it is built: the system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) with ``-O3
-ffp-contract=off`` and the vector extensions torch itself uses on this CPU
(:func:`torch.backends.cpu.get_cpu_capability`), into ``$XDG_CACHE_HOME/lit_deep/native`` (default
``~/.cache``), named by a hash of the source, compiler and flags; written to a temporary file and renamed, so that
DDP ranks compiling at once never load a half-written file. Compiled once per machine (about a second), loaded in
milliseconds afterwards. A library is loaded only from a directory and file owned by the user and writable by no
one else.

Off switch and fallback: ``LIT_DEEP_NATIVE=0`` keeps the torch path; so does any failure (no compiler, a compile
error, a refused cache directory), said once in an info line of the ``lit_deep.uncertainty`` logger. The masks
and outputs are the same either way.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["NativeMasks", "native_masks"]

_LOG = logging.getLogger("lit_deep.uncertainty")
_SOURCE = Path(__file__).with_name("_masks.c")
_ABI = 2
_BASE_FLAGS = ("-O3", "-std=c99", "-shared", "-fPIC", "-ffp-contract=off", "-fno-strict-aliasing")
_ISA_FLAGS = {
    "AVX512": ("-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"),
    "AVX2": ("-mavx2",),
}
_DTYPES = {torch.float32: "lit_deep_dropout_f32", torch.float64: "lit_deep_dropout_f64"}
_COMPILE_TIMEOUT_S = 120

_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _compiler() -> list[str] | None:
    """The C compiler's command line: ``$CC`` (split like a shell would), else the first of cc, gcc, clang."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def _flags() -> tuple[str, ...]:
    """Compile flags: the base ones plus the vector extensions torch uses on this CPU (x86-64 only)."""
    isa: tuple[str, ...] = ()
    if platform.machine().lower() in ("x86_64", "amd64"):
        isa = _ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), ())
    return _BASE_FLAGS + isa


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lit_deep" / "native"


def _private(path: Path, what: str) -> None:
    """Refuse ``path`` unless the user owns it and no one else can write to it (a library there is executed)."""
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(f"{what} {path} is not owned by this user or is writable by others")


def _target(compiler: list[str], flags: tuple[str, ...]) -> Path:
    """Where the library built by ``compiler`` with ``flags`` is cached: named by a hash of source, command, OS."""
    text = [_SOURCE.read_bytes(), " ".join(compiler + list(flags)).encode(), sys.platform.encode()]
    digest = hashlib.sha256(b"\0".join(text)).hexdigest()
    return _cache_dir() / f"masks-{digest[:16]}.so"


def _build(compiler: list[str], flags: tuple[str, ...]) -> Path:
    """The compiled library's path: from the cache if there, else compiled now (atomically renamed into place)."""
    target = _target(compiler, flags)
    directory = target.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    _private(directory, "cache directory")
    if target.exists():
        _private(target, "cached library")
        return target
    fd, partial = tempfile.mkstemp(prefix=target.stem, suffix=".so.tmp", dir=directory)
    os.close(fd)
    try:
        result = subprocess.run(
            [*compiler, *flags, "-o", partial, str(_SOURCE)],
            capture_output=True,
            text=True,
            timeout=_COMPILE_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["no message"])[0]
            raise OSError(f"{compiler[0]} failed (exit {result.returncode}): {first}")
        os.chmod(partial, 0o700)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return target


class NativeMasks:
    """The loaded kernel: keyed dropout of CPU float32/float64 rows, on the calling thread.

    One thread: on the 2-core reference machine it was faster than the rows split over two threads (0.33 against
    0.44 ns per element alone, 0.45 against 0.73 between matmuls, whose OpenMP workers keep spinning).

    Args:
        library: the loaded shared library.

    Example::

        >>> kernel = native_masks()
        >>> kernel is None or kernel.supports(torch.ones(2, dtype=torch.float32))
        True
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        if library.lit_deep_masks_abi() != _ABI:
            raise OSError(f"the cached library reports interface {library.lit_deep_masks_abi()}, expected {_ABI}")
        self._functions = {}
        for dtype, name in _DTYPES.items():
            function = getattr(library, name)
            function.restype = None
            function.argtypes = [ctypes.c_uint64, ctypes.c_void_p] + [ctypes.c_int64] * 4
            function.argtypes += [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]
            function.argtypes += [ctypes.c_double] * 4
            self._functions[dtype] = function
        self._library = library  # kept alive with the functions taken from it

    @staticmethod
    def supports(x: torch.Tensor) -> bool:
        """Whether ``x`` can take the native path: a CPU tensor of float32 or float64."""
        return x.device.type == "cpu" and x.dtype in _DTYPES

    def dropout(
        self,
        call_key: int,
        indices: torch.Tensor,
        first: int,
        x: torch.Tensor,
        out: torch.Tensor,
        threshold: int,
        scale: float,
        alpha: tuple[float, float, float] | None = None,
    ) -> torch.Tensor:
        """Write the keyed dropout of ``x`` into ``out`` and return it (see ``_masks.c`` for the arithmetic).

        Args:
            call_key: the call's key ``K_j`` (unsigned 64-bit).
            indices: the images' dataset indices, CPU int64 ``[S]``.
            first: the first sample of ``out``.
            x: ``[X, ...]``, contiguous, ``X`` = ``S`` (broadcast over the samples) or the rows of ``out``.
            out: ``[samples * S, ...]`` sample-major, contiguous, of ``x``'s dtype.
            threshold: keep a unit when its 16-bit draw read as int16 is ``>=`` this.
            scale: ``1 / (1 - p)`` of plain dropout.
            alpha: ``(a, shift, base)`` of alpha dropout, or ``None``.
        """
        images, rows = indices.numel(), out.shape[0]
        # The C code trusts its arguments: anything that would make it read or write out of bounds (or divide by
        # zero) stops here, in one line.
        if not (
            images > 0
            and rows % images == 0
            and x.shape[0] in (images, rows)
            and x.dtype == out.dtype
            and x.is_contiguous()
            and out.is_contiguous()
            and x.numel() * rows == out.numel() * x.shape[0]
        ):
            raise ValueError(
                f"native masks: rows {rows} of {tuple(out.shape)} {out.dtype} do not fit {images} images and an input "
                f"of {tuple(x.shape)} {x.dtype}"
            )
        indices = indices.to(device="cpu", dtype=torch.int64).contiguous()
        a, shift, base = alpha if alpha is not None else (1.0, 0.0, 0.0)
        self._functions[x.dtype](
            call_key, indices.data_ptr(), images, first, rows // images, out.numel() // rows, x.data_ptr(),
            x.shape[0], out.data_ptr(), threshold, alpha is not None, scale, a, shift, base,
        )  # fmt: skip
        return out


def native_masks() -> NativeMasks | None:
    """The native kernel, compiled and loaded on the first call; ``None`` where it is off or unavailable.

    The reason it is unavailable is logged once (info level of ``lit_deep.uncertainty``).

    Example::

        >>> native_masks() is native_masks()
        True
    """
    with _LOCK:
        if "kernel" in _STATE:
            return _STATE["kernel"]  # type: ignore[return-value]
        kernel: NativeMasks | None = None
        if os.environ.get("LIT_DEEP_NATIVE", "1") == "0":
            reason = "LIT_DEEP_NATIVE=0"
        elif not hasattr(os, "getuid"):
            reason = f"not built on {sys.platform}"
        else:
            compiler = _compiler()
            reason = "no C compiler found (set CC)" if compiler is None else ""
            if compiler is not None:
                try:
                    kernel = NativeMasks(ctypes.CDLL(str(_build(compiler, _flags()))))
                except (OSError, subprocess.SubprocessError, AttributeError) as error:
                    reason = str(error)
        if kernel is None:
            _LOG.info(
                "mc_predict: native mask kernel not used (%s); masks are drawn with torch ops (same masks)", reason
            )
        _STATE["kernel"] = kernel
        return kernel


def _reset() -> None:
    """Forget the loaded kernel (tests: a changed environment or cache directory is read again)."""
    with _LOCK:
        _STATE.clear()
