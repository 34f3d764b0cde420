import gzip
import struct

import numpy as np
import pytest
import torch

from lit_deep.data import IDXError, read_idx, write_idx
from lit_deep.data._idx import encode_idx, parse_idx

# dtype -> (IDX code, big-endian numpy dtype), written out from the format's specification.
DTYPES = {
    torch.uint8: (0x08, ">u1"),
    torch.int8: (0x09, ">i1"),
    torch.int16: (0x0B, ">i2"),
    torch.int32: (0x0C, ">i4"),
    torch.float32: (0x0D, ">f4"),
    torch.float64: (0x0E, ">f8"),
}


def _sample(dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        values = torch.randn(2, 3, 4, generator=gen, dtype=dtype) * 1e3
        values[0, 0, 0] = torch.finfo(dtype).max
        values[0, 0, 1] = torch.finfo(dtype).tiny
        return values
    info = torch.iinfo(dtype)
    values = torch.randint(info.min, info.max, (2, 3, 4), generator=gen, dtype=torch.int64).to(dtype)
    values[0, 0, 0], values[0, 0, 1] = info.min, info.max
    return values


def _reference_bytes(tensor: torch.Tensor) -> bytes:
    code, np_dtype = DTYPES[tensor.dtype]
    header = bytes([0, 0, code, tensor.dim()]) + b"".join(struct.pack(">I", s) for s in tensor.shape)
    return header + tensor.numpy().astype(np_dtype).tobytes()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, dtype, name):
    tensor = _sample(dtype)
    path = tmp_path / name
    write_idx(path, tensor)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert (gzip.decompress(raw) if name.endswith(".gz") else raw) == _reference_bytes(tensor)
    back = read_idx(path)
    assert back.dtype == dtype
    assert torch.equal(back, tensor)


def test_compress_flag_overrides_suffix(tmp_path):
    tensor = torch.arange(6, dtype=torch.uint8).view(2, 3)
    write_idx(tmp_path / "plain.gz", tensor, compress=False)
    write_idx(tmp_path / "packed", tensor, compress=True)
    assert (tmp_path / "plain.gz").read_bytes() == _reference_bytes(tensor)
    assert gzip.decompress((tmp_path / "packed").read_bytes()) == _reference_bytes(tensor)
    assert torch.equal(read_idx(tmp_path / "plain.gz"), tensor)
    assert torch.equal(read_idx(tmp_path / "packed"), tensor)


def test_reads_a_hand_built_file(tmp_path):
    # 2 images of 2x3 pixels, written byte by byte.
    payload = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, *range(12)])
    (tmp_path / "hand").write_bytes(payload)
    assert read_idx(tmp_path / "hand").tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]


def test_write_leaves_no_temporary_files(tmp_path):
    write_idx(tmp_path / "sub" / "x.gz", torch.zeros(3, dtype=torch.uint8))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.gz"]


def test_write_rejects_unsupported_tensors_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"tensor: dtype torch.int64 cannot be stored in IDX"):
        write_idx(tmp_path / "a", torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"tensor: IDX needs 1 to 255 dimensions, got shape \(\)"):
        encode_idx(torch.tensor(3, dtype=torch.uint8))
    assert list(tmp_path.iterdir()) == []


def _good() -> bytes:
    return _reference_bytes(torch.arange(12, dtype=torch.int16).view(3, 4))


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"\x00\x00", r"truncated: 2 bytes, shorter than the 4-byte magic number"),
        (_good()[:10], r"truncated inside the header \(10 of 12 bytes\)"),
        (_good()[:-1], r"truncated: dimensions \(3, 4\) need 24 data bytes, found 23"),
        (
            _good() + b"\x00",
            r"corrupted: dimensions \(3, 4\) need 24 data bytes, (found 25|the gzip stream holds more)",
        ),
        (b"\x01" + _good()[1:], r"bad magic number 0x01000b02"),
        (b"\x00\x00\x07\x01" + _good()[4:], r"unknown dtype code 0x07"),
        (b"\x00\x00\x08\x00", r"declares 0 dimensions"),
    ],
    ids=["short-magic", "short-header", "short-body", "extra-bytes", "bad-magic", "bad-dtype", "zero-dims"],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_malformed_files_name_the_file_and_the_problem(tmp_path, payload, problem, compressed):
    path = tmp_path / ("broken.gz" if compressed else "broken")
    path.write_bytes(gzip.compress(payload) if compressed else payload)
    with pytest.raises(IDXError, match=rf"{path}: .*{problem}"):
        read_idx(path)


def test_corrupted_gzip_names_the_file(tmp_path):
    packed = bytearray(gzip.compress(_reference_bytes(torch.arange(4000, dtype=torch.int32)), mtime=0))
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(packed[: len(packed) // 2]))  # cut in the middle of the deflate stream
    with pytest.raises(IDXError, match=rf"{path}: the gzip stream is truncated or corrupted"):
        read_idx(path)
    for i in range(20, 40):  # garble the deflate stream (or, if it still inflates, the CRC catches it)
        packed[i] ^= 0xFF
    path.write_bytes(bytes(packed))
    with pytest.raises(IDXError, match=rf"{path}: the gzip stream is truncated or corrupted"):
        read_idx(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_parse_idx_is_big_endian():
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + np.array([1, -2], dtype=">i4").tobytes()
    assert parse_idx(data).tolist() == [1, -2]


def test_a_gzip_bomb_is_refused_quickly_without_inflating_it(tmp_path):
    import resource
    import time
    import tracemalloc
    import zlib

    path = tmp_path / "bomb-labels-idx1-ubyte.gz"
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip of a 1-item header followed by 50 MB of zeros
    parts = [squeeze.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1]))]
    zeros = bytes(1 << 20)
    parts += [squeeze.compress(zeros) for _ in range(50)]
    path.write_bytes(b"".join([*parts, squeeze.flush()]))
    assert path.stat().st_size < 100_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(IDXError) as caught:
        read_idx(path)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (
        str(caught.value) == f"{path}: file is corrupted: dimensions (1,) need 1 data bytes, the gzip stream holds more"
    )
    assert elapsed < 1.0 and peak < 20e6
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024 < 20e6  # KiB


def test_a_gzip_file_is_still_checked_to_its_end(tmp_path):
    packed = bytearray(gzip.compress(_good(), mtime=0))
    packed[-8] ^= 0xFF  # the CRC-32 in the trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(IDXError, match=rf"{path}: the gzip stream is truncated or corrupted \(CRC check failed"):
        read_idx(path)
