"""`gdkvm.data.store.write_store`: the public writer the preparers share (format: docs/store.md)."""

from __future__ import annotations

import numpy as np
import pytest

from gdkvm.data.store import (
    MANIFEST_COLUMNS,
    BadCase,
    StoreClip,
    empty_split_note,
    open_store,
    read_store_meta,
    verify_store,
    write_store,
)
from gdkvm.errors import ConfigError

T, S = 4, 16


def clip(split: str, case: str, value: int = 7) -> StoreClip:
    images = np.full((T, S, S), value, np.uint8)
    masks = np.zeros((T, S, S), np.uint8)
    masks[:, 4:12, 4:12] = 1
    labeled = np.array([True, False, False, True])
    return StoreClip(split, images, masks, labeled, {"case_id": case, "patient": case, "view": "4CH", "ef": 55.0})


def test_write_store_streams_clips_and_reads_lists_after_the_generator(tmp_path):
    bad: list[BadCase] = []
    notes: list[str] = []

    def clips():
        yield clip("train", "a", 1)
        yield clip("train", "b", 2)
        bad.append(BadCase("x.avi", "unreadable"))
        yield clip("test", "c", 3)
        notes.append("done")

    summary = write_store(tmp_path / "out", "mine", clips(), frames=T, size=S, source="raw", options={"size": S},
                          inputs_sha256="0" * 64, bad_cases=bad, notes=notes, extra={"split_source": "mine"},
                          source_root=tmp_path / "raw" / ".." / "raw")
    assert summary.counts == {"train": 2, "val": 0, "test": 1} and summary.empty_splits == ["val"]
    # the notes the generator made, then one per empty split
    assert summary.bad_cases == [BadCase("x.avi", "unreadable")] and summary.notes == ["done", empty_split_note("val")]
    assert summary.source_root == (tmp_path / "raw").resolve()
    meta = verify_store(tmp_path / "out" / "mine")
    assert meta["dataset"] == "mine" and meta["source_root"] == str((tmp_path / "raw").resolve())
    assert meta["notes"] == ["done", "split 'val' has 0 cases"] and meta["split_source"] == "mine"
    assert meta["bad_cases"] == [{"file": "x.avi", "problem": "unreadable"}]
    train = open_store(tmp_path / "out" / "mine", "train")
    assert train.images.shape == (2, T, S, S) and train.images[1, 0, 0, 0] == 2
    assert train.manifest["split"].tolist() == ["train", "train"]
    assert list(train.manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(open_store(tmp_path / "out" / "mine", "val")) == 0


def test_write_store_keeps_the_old_store_when_the_clips_fail(tmp_path):
    write_store(tmp_path / "out", "mine", [clip("train", "a")], frames=T, size=S, source="raw", options={},
                inputs_sha256="1" * 64)

    def failing():
        yield clip("train", "b")
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError):
        write_store(tmp_path / "out", "mine", failing(), frames=T, size=S, source="raw", options={},
                    inputs_sha256="2" * 64)
    assert read_store_meta(tmp_path / "out" / "mine")["inputs_sha256"] == "1" * 64
    with pytest.raises(RuntimeError):
        write_store(tmp_path / "new", "mine", failing(), frames=T, size=S, source="raw", options={},
                    inputs_sha256="2" * 64)
    assert not (tmp_path / "new").exists()


def test_write_store_refuses_bad_clips_and_names(tmp_path):
    args = dict(frames=T, size=S, source="raw", options={}, inputs_sha256="0" * 64)
    with pytest.raises(ValueError, match="split 'training'"):
        write_store(tmp_path, "mine", [clip("training", "a")], **args)
    bad_row = clip("train", "a")
    bad_row.row["colour"] = "red"
    with pytest.raises(ValueError, match="unknown manifest column"):
        write_store(tmp_path, "mine", [bad_row], **args)
    small = clip("train", "a")
    with pytest.raises(ValueError, match="must both be"):
        write_store(tmp_path, "mine", [StoreClip("train", small.images[:, :8], small.masks, small.labeled, small.row)],
                    **args)
    with pytest.raises(ConfigError, match="plain folder name"):
        write_store(tmp_path, "../up", [], **args)
    assert not (tmp_path / "mine").exists()
