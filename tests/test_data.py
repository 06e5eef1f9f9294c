import gzip
import hashlib

import pytest
import torch

from genai_lab import data


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """An empty cache and an empty shared mirror."""
    monkeypatch.setenv("GENAI_LAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("GENAI_LAB_SHARED", str(tmp_path / "shared"))
    return tmp_path


def _entry(tmp_path, content=b"hello world\n", **kw):
    return data.DataFile(relpath="demo/file.txt", sha256=hashlib.sha256(content).hexdigest(), **kw)


def test_digits_shapes_and_split():
    d = data.load_digits()
    assert d.train_x.shape[1:] == (1, 8, 8) and d.train_x.dtype == torch.float32
    assert 0.0 <= d.train_x.min() and d.train_x.max() <= 1.0
    assert len(d.train_y) + len(d.test_y) == 1797
    assert set(d.test_y.tolist()) == set(range(10))


def test_tiny_shakespeare_hash_and_split():
    text = data.load_tiny_shakespeare()
    assert len(text) == 1115394
    train, val = data.train_val_split(text, 0.9)
    assert train + val == text and len(train) == int(0.9 * len(text))


def test_fashion_mnist_subset_if_available():
    entries = data.REGISTRY["fashion_mnist"].files
    if not all(data.locate_file(e) for e in entries):
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)")
    d = data.load_fashion_mnist(train_limit=100, test_limit=50)
    assert d.train_x.shape == (100, 1, 28, 28) and d.test_x.shape == (50, 1, 28, 28)
    assert len(d.classes) == 10


def test_sources_in_order_mirror_then_cache(isolated):
    content = b"hello world\n"
    entry = _entry(isolated, content)
    mirror = isolated / "shared" / "data" / "demo" / "file.txt"
    mirror.parent.mkdir(parents=True)
    mirror.write_bytes(content)
    assert data.fetch_file(entry, allow_download=False) == mirror
    cached = isolated / "cache" / "demo" / "file.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)
    assert data.fetch_file(entry, allow_download=False) == cached


def test_corrupt_cache_is_deleted_and_never_used(isolated):
    entry = _entry(isolated)
    cached = isolated / "cache" / "demo" / "file.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"tampered\n")
    with pytest.raises(data.DataUnavailableError, match="demo/file.txt"):
        data.fetch_file(entry, allow_download=False)
    assert not cached.exists()


def test_corrupt_mirror_is_named_in_the_error(isolated):
    entry = _entry(isolated, hint="copy it to {cache}/demo/file.txt")
    mirror = isolated / "shared" / "data" / "demo" / "file.txt"
    mirror.parent.mkdir(parents=True)
    mirror.write_bytes(b"wrong\n")
    with pytest.raises(data.DataUnavailableError) as err:
        data.fetch_file(entry, allow_download=False)
    msg = str(err.value)
    assert str(mirror) in msg and "copy it to" in msg and mirror.exists()


def test_offline_missing_file_says_what_to_do(isolated, monkeypatch):
    monkeypatch.setenv("GENAI_LAB_OFFLINE", "1")
    entry = _entry(isolated, url="https://example.invalid/file.txt", hint="install the demo package")
    with pytest.raises(data.DataUnavailableError, match="offline mode.*install the demo package"):
        data.fetch_file(entry)


def test_download_is_verified(isolated, monkeypatch):
    content = b"served\n"
    entry = _entry(isolated, content, url="https://example.invalid/file.txt")

    def fake_download(url, dest, timeout=20.0):
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(fake_download.payload)

    monkeypatch.setattr(data, "_download", fake_download)
    fake_download.payload = b"corrupted in transit\n"
    with pytest.raises(data.DataUnavailableError, match="failed its sha256"):
        data.fetch_file(entry, allow_download=True)
    assert not (isolated / "cache" / "demo" / "file.txt").exists()
    fake_download.payload = content
    assert data.fetch_file(entry, allow_download=True).read_bytes() == content


def test_gunzip_hash_compares_content(tmp_path):
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    with gzip.open(a, "wb", compresslevel=1) as fh:
        fh.write(b"x" * 1000)
    with gzip.open(b, "wb", compresslevel=9) as fh:
        fh.write(b"x" * 1000)
    assert data.file_sha256(a, "gunzip") == data.file_sha256(b, "gunzip")
    assert data.file_sha256(a) != data.file_sha256(b) or a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("call, match", [
    (lambda: data.load_dataset("imagenet"), "name"),
    (lambda: data.load_fashion_mnist(train_limit=0), "train_limit"),
    (lambda: data.load_digits(test_fraction=1.5), "test_fraction"),
    (lambda: data.train_val_split("", 0.9), "text"),
    (lambda: data.train_val_split("abc", 1.0), "train_fraction"),
    (lambda: data.load_images("cifar"), "name"),
    (lambda: data.file_sha256(__file__, "md5"), "hash_of"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_copy_into_cache_checks_hash(isolated, tmp_path):
    bad = tmp_path / "input.txt"
    bad.write_text("not shakespeare")
    with pytest.raises(ValueError, match="sha256"):
        data.copy_into_cache("tinyshakespeare/input.txt", bad)
    with pytest.raises(ValueError, match="name"):
        data.copy_into_cache("nope.txt", bad)
