import gzip
import hashlib
import http.server
import socket
import threading
import zlib
from functools import partial

import pytest
import torch

import lit_deep.data.fashion_mnist as fm
from lit_deep.data import (
    CLASS_NAMES,
    DataNotFoundError,
    IDXError,
    load_fashion_mnist,
    locate_fashion_mnist,
    write_idx,
)
from lit_deep.data._idx import encode_idx
from tests.conftest import FILE_NAMES, REAL_DIR, write_fake_fmnist


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No LIT_DEEP_DATA, an empty user cache in tmp_path, no Debian copy, an unreachable mirror."""
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fm, "MIRRORS", (f"http://127.0.0.1:{_free_port()}/",))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "xdg" / "lit_deep" / "fashion-mnist"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _garbled_gzip(name: str) -> bytes:
    """A gzip file of a compressible IDX whose deflate stream is garbled (zlib.error, not a CRC failure)."""
    images = (torch.arange(20 * 28 * 28) // 97 % 7).to(torch.uint8).view(20, 28, 28)
    packed = bytearray(gzip.compress(encode_idx(images if "images" in name else images[:, 0, 0])))
    for i in range(12, 40):
        packed[i] ^= 0xFF
    with pytest.raises(zlib.error):
        gzip.decompress(bytes(packed))
    return bytes(packed)


def _sha256_of_decompressed(path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Truncating(_Quiet):
    """Promises 1000 bytes and sends 10."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + bytes(8))
        self.close_connection = True


@pytest.fixture
def serve(tmp_path, monkeypatch, isolated):
    """``serve(handler=_Quiet)``: a loopback HTTP server over tmp_path/"mirror", installed as the only mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    servers = []

    def start(handler=_Quiet):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        monkeypatch.setattr(fm, "MIRRORS", (f"http://127.0.0.1:{server.server_address[1]}/",))
        return root

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def mirror(serve):
    return serve()


def test_loads_from_data_dir(tiny_fmnist, isolated):
    for split in ("train", "test"):
        images, labels = load_fashion_mnist(split, tiny_fmnist.path)
        assert images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.equal(images, tiny_fmnist.images(split))
        assert torch.equal(labels, tiny_fmnist.labels(split))


def test_search_order(tmp_path, monkeypatch, isolated):
    sources = {name: write_fake_fmnist(tmp_path / name, n_train=10 + i, n_test=5) for i, name in enumerate("ABCD")}
    data_dir, env_dir, cache, debian = (sources[k].path for k in "ABCD")
    monkeypatch.setenv("LIT_DEEP_DATA", str(env_dir))
    monkeypatch.setattr(fm, "cache_dir", lambda: cache)
    monkeypatch.setattr(fm, "DEBIAN_DIR", debian)
    assert locate_fashion_mnist("train", data_dir) == data_dir
    assert locate_fashion_mnist("train") == env_dir
    monkeypatch.delenv("LIT_DEEP_DATA")
    assert locate_fashion_mnist("train") == cache
    monkeypatch.setattr(fm, "cache_dir", lambda: tmp_path / "empty-cache")
    assert locate_fashion_mnist("train") == debian
    assert load_fashion_mnist("train", verify=False)[0].shape[0] == 13


def test_user_cache_follows_xdg_cache_home(tmp_path, isolated):
    assert fm.cache_dir() == isolated
    write_fake_fmnist(isolated, n_train=12)
    assert locate_fashion_mnist("train") == isolated


def test_only_data_dir_is_trusted_without_checksum(tiny_fmnist, monkeypatch, isolated):
    # The same tiny files fail the real checksums when found through $LIT_DEEP_DATA.
    monkeypatch.setenv("LIT_DEEP_DATA", str(tiny_fmnist.path))
    with pytest.raises(
        IDXError, match=r"train-images-idx3-ubyte.gz: SHA-256 of the decompressed data is [0-9a-f]+, exp"
    ):
        load_fashion_mnist("train")
    with pytest.raises(IDXError, match=r"SHA-256"):
        load_fashion_mnist("train", tiny_fmnist.path, verify=True)
    assert load_fashion_mnist("train", verify=False)[0].shape == (60, 28, 28)


def test_checksum_mismatch_in_cache(isolated):
    write_fake_fmnist(isolated)  # real-looking names, wrong content
    with pytest.raises(
        IDXError, match=rf"{isolated}/t10k-images-idx3-ubyte.gz: SHA-256 .* expected {fm.FILES[FILE_NAMES['test'][0]]}"
    ):
        load_fashion_mnist("test")


def test_corrupted_gzip_in_cache(isolated):
    fake = write_fake_fmnist(isolated)
    path = fake.path / FILE_NAMES["test"][0]
    path.write_bytes(_garbled_gzip(path.name))
    with pytest.raises(IDXError, match=rf"{path}: the gzip stream is truncated or corrupted"):
        load_fashion_mnist("test")


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch, mirror, isolated):
    fake = write_fake_fmnist(mirror, n_train=30, n_test=10)
    monkeypatch.setattr(fm, "FILES", {name: _sha256_of_decompressed(mirror / name) for name in fm.FILES})
    images, labels = load_fashion_mnist("test")
    assert torch.equal(images, fake.test_images)
    assert torch.equal(labels, fake.test_labels)
    assert sorted(p.name for p in isolated.iterdir()) == sorted(FILE_NAMES["test"])
    for name in FILE_NAMES["test"]:
        assert (isolated / name).read_bytes() == (mirror / name).read_bytes()
    images, labels = load_fashion_mnist("train")
    assert torch.equal(labels, fake.train_labels)
    assert sorted(p.name for p in isolated.iterdir()) == sorted(fm.FILES)
    for name in fm.FILES:  # served from the cache now: the mirror may go away
        (mirror / name).unlink()
    assert torch.equal(load_fashion_mnist("train")[0], fake.train_images)


def test_download_hash_mismatch_leaves_nothing(tmp_path, mirror, isolated):
    write_fake_fmnist(mirror)  # the real FILES checksums do not match these
    with pytest.raises(DataNotFoundError, match=r"download failed: .*train-images-idx3-ubyte.gz: SHA-256 .* expected"):
        load_fashion_mnist("train")
    assert not isolated.exists() or list(isolated.iterdir()) == []


@pytest.mark.parametrize("payload", [b"not gzip at all", "corrupt"])
def test_download_of_a_broken_file_is_reported(mirror, isolated, payload):
    name = FILE_NAMES["test"][0]
    (mirror / name).write_bytes(_garbled_gzip(name) if payload == "corrupt" else payload)
    with pytest.raises(DataNotFoundError, match=rf"{name}: not a valid gzip file"):
        load_fashion_mnist("test")
    assert not isolated.exists() or list(isolated.iterdir()) == []


def test_truncated_download_is_reported(serve, isolated):
    serve(_Truncating)
    with pytest.raises(DataNotFoundError, match=r"t10k-images-idx3-ubyte.gz: IncompleteRead"):
        load_fashion_mnist("test")
    assert not isolated.exists() or list(isolated.iterdir()) == []


def test_missing_on_mirror_is_reported(mirror, isolated):
    with pytest.raises(DataNotFoundError, match=r"t10k-images-idx3-ubyte.gz: HTTP Error 404"):
        load_fashion_mnist("test")


def test_offline_error_lists_every_remedy(tmp_path, isolated):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("train")
    message = str(info.value)
    assert "\n" not in message
    assert "Fashion-MNIST (train split) not found" in message
    assert "download failed" in message
    assert fm.MIRRORS[0] in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "data_dir=" in message
    assert "LIT_DEEP_DATA" in message
    assert str(isolated) in message
    assert "network access" in message
    assert not isolated.exists() or not any(isolated.iterdir())


def test_download_disabled(isolated):
    with pytest.raises(DataNotFoundError, match=r"download disabled"):
        locate_fashion_mnist("test", download=False)


def test_incomplete_data_dir_is_an_error(tiny_fmnist, isolated):
    (tiny_fmnist.path / FILE_NAMES["train"][1]).unlink()
    with pytest.raises(DataNotFoundError, match=r"data_dir: .* lacks train-labels-idx1-ubyte.gz \(train split\)"):
        load_fashion_mnist("train", tiny_fmnist.path)


@pytest.fixture
def other_copies(tmp_path, monkeypatch, isolated):
    """A complete copy in the user cache and in the Debian folder: what a named folder must never fall back to."""
    write_fake_fmnist(isolated, n_train=11)
    write_fake_fmnist(tmp_path / "debian", n_train=12)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    return isolated


def test_misspelt_data_dir_is_refused_not_replaced(tmp_path, other_copies):
    assert locate_fashion_mnist("train") == other_copies  # the fallbacks exist ...
    with pytest.raises(DataNotFoundError, match=r"data_dir: folder .*/typo does not exist; fix data_dir or leave"):
        load_fashion_mnist("train", tmp_path / "typo")  # ... but a named folder is used or refused


def test_data_dir_with_only_the_training_files_is_refused_for_the_test_split(make_fmnist, other_copies):
    fake = make_fmnist()
    for name in FILE_NAMES["test"]:
        (fake.path / name).unlink()
    assert load_fashion_mnist("train", fake.path)[0].shape[0] == 60
    with pytest.raises(DataNotFoundError, match=r"lacks t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist("test", fake.path)


def test_misspelt_environment_folder_is_refused(tmp_path, monkeypatch, other_copies):
    monkeypatch.setenv("LIT_DEEP_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match=r"\$LIT_DEEP_DATA: folder .*typo does not exist; fix \$LIT_DEEP_DATA"):
        locate_fashion_mnist("train")


def test_data_dir_that_is_a_file_is_refused(tiny_fmnist, other_copies):
    with pytest.raises(DataNotFoundError, match=r"data_dir: .*train-images-idx3-ubyte.gz is not a folder"):
        locate_fashion_mnist("train", tiny_fmnist.path / FILE_NAMES["train"][0])


def test_unknown_split(tiny_fmnist):
    with pytest.raises(ValueError, match=r"split: must be one of \('train', 'test'\), got 'validation'"):
        load_fashion_mnist("validation", tiny_fmnist.path)


def test_count_mismatch_names_both_files(tiny_fmnist):
    write_idx(tiny_fmnist.path / FILE_NAMES["test"][1], torch.zeros(19, dtype=torch.uint8))
    with pytest.raises(
        IDXError, match=r"t10k-images-idx3-ubyte.gz holds 20 images but t10k-labels-idx1-ubyte.gz holds 19"
    ):
        load_fashion_mnist("test", tiny_fmnist.path)


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        (torch.tensor([0, 10], dtype=torch.uint8), r"label 10 is outside 0..9"),
        (torch.tensor([0, -1], dtype=torch.int8), r"label -1 is outside 0..9"),
        (torch.tensor([0.0, 1.5]), r"expected integer labels, got torch.float32"),
        (torch.zeros(2, 1, dtype=torch.uint8), r"expected a 1-D label vector, got shape \(2, 1\)"),
    ],
)
def test_bad_labels(tmp_path, labels, problem):
    write_idx(tmp_path / FILE_NAMES["test"][0], torch.zeros(2, 28, 28, dtype=torch.uint8))
    write_idx(tmp_path / FILE_NAMES["test"][1], labels)
    with pytest.raises(IDXError, match=rf"{tmp_path}/t10k-labels-idx1-ubyte.gz: {problem}"):
        load_fashion_mnist("test", tmp_path)


def test_bad_images(tmp_path):
    write_idx(tmp_path / FILE_NAMES["test"][0], torch.zeros(2, 784, dtype=torch.uint8))
    write_idx(tmp_path / FILE_NAMES["test"][1], torch.zeros(2, dtype=torch.uint8))
    with pytest.raises(IDXError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images \[N, H, W\]"):
        load_fashion_mnist("test", tmp_path)


@pytest.mark.realdata
def test_real_files_are_verified_and_complete(monkeypatch):
    monkeypatch.delenv("LIT_DEEP_DATA", raising=False)
    assert len(CLASS_NAMES) == 10
    for split, n in (("train", 60_000), ("test", 10_000)):
        for name in FILE_NAMES[split]:
            assert _sha256_of_decompressed(REAL_DIR / name) == fm.FILES[name]
        images, labels = load_fashion_mnist(split, REAL_DIR, verify=True)
        assert images.shape == (n, 28, 28)
        assert images.dtype == torch.uint8
        assert torch.equal(torch.bincount(labels), torch.full((10,), n // 10))
    train = load_fashion_mnist("train", REAL_DIR)[0].float() / 255
    assert train.mean().item() == pytest.approx(0.2860, abs=1e-4)
    assert train.std().item() == pytest.approx(0.3530, abs=1e-4)
