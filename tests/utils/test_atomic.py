"""Atomic writes leave either the complete new content or the old one, never a partial file."""

import pytest

from gdkvm.utils.atomic import atomic_dir, atomic_path, atomic_write_text, sha256_file


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_swaps_and_cleans(tmp_path):
    target = tmp_path / "store"
    with atomic_dir(target) as d:
        (d / "x").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as d:
            (d / "x").write_text("2")
            raise ValueError("bad input")
    assert (target / "x").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "y").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_sha256(tmp_path):
    import hashlib

    f = tmp_path / "f.bin"
    f.write_bytes(b"abc" * 1000)
    assert sha256_file(f, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
