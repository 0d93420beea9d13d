"""Data protocols (`--protocol gdkvm|memsam`): each sets the documented options together, an explicit option
overrides it, and the store records it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gdkvm.cli.main import app
from gdkvm.data import echonet
from gdkvm.data.prepare_camus import CAMUS_DEFAULTS, CAMUS_PROTOCOLS, prepare_camus
from gdkvm.data.prepare_echonet import (
    ECHONET_DEFAULTS,
    ECHONET_PROTOCOLS,
    prepare_echonet,
    resolve_protocol,
)
from gdkvm.data.sampling import sample_indices
from gdkvm.data.store import open_store
from gdkvm.errors import GdkvmError
from tests.data.fixtures import EchoVideoSpec, write_camus_dataset, write_echonet_dataset

runner = CliRunner()

# What docs/store.md ("Protocols") promises, written out independently of the code's tables.
DOCUMENTED_ECHONET = {
    "gdkvm": {"clip": "ed-es", "sampling": "rint", "size": 128, "frames": 10, "gray": "luma",
              "tracing_rows": "all", "mask_fill": "cv2"},
    "memsam": {"clip": "earlier-later", "sampling": "floor", "size": 256, "frames": 10, "gray": "channel",
               "tracing_rows": "exact", "mask_fill": "skimage"},
}
DOCUMENTED_CAMUS = {
    "gdkvm": {"sampling": "rint", "size": 256, "frames": 10, "labels": "lv", "split": "official"},
    "memsam": {"sampling": "floor", "size": 256, "frames": 10, "labels": "lv", "split": "memsam"},
}
NO_ECHONET = {"size": None, "sampling": None, "clip": None, "frames": None, "tracing_rows": None, "gray": None,
              "mask_fill": None}


def test_protocol_tables_are_the_documented_ones():
    assert ECHONET_PROTOCOLS == DOCUMENTED_ECHONET
    assert CAMUS_PROTOCOLS == DOCUMENTED_CAMUS
    assert set(ECHONET_DEFAULTS) == set(DOCUMENTED_ECHONET["gdkvm"])
    assert set(CAMUS_DEFAULTS) == set(DOCUMENTED_CAMUS["gdkvm"])


@pytest.mark.parametrize("protocol", ["gdkvm", "memsam"])
def test_resolve_gives_the_protocol_and_explicit_options_override(protocol):
    values, overridden = resolve_protocol(protocol, ECHONET_PROTOCOLS, ECHONET_DEFAULTS, NO_ECHONET)
    assert values == DOCUMENTED_ECHONET[protocol] and overridden == []
    explicit = {**NO_ECHONET, "size": 64, "sampling": "floor" if protocol == "gdkvm" else "rint"}
    values, overridden = resolve_protocol(protocol, ECHONET_PROTOCOLS, ECHONET_DEFAULTS, explicit)
    assert values == {**DOCUMENTED_ECHONET[protocol], "size": 64, "sampling": explicit["sampling"]}
    assert sorted(overridden) == ["sampling", "size"]
    # an explicit value equal to the protocol's is no override
    same = {**NO_ECHONET, "clip": DOCUMENTED_ECHONET[protocol]["clip"]}
    assert resolve_protocol(protocol, ECHONET_PROTOCOLS, ECHONET_DEFAULTS, same)[1] == []


def test_no_protocol_keeps_the_old_defaults_and_unknown_is_refused():
    values, overridden = resolve_protocol(None, ECHONET_PROTOCOLS, ECHONET_DEFAULTS, NO_ECHONET)
    assert values == ECHONET_DEFAULTS == {"clip": "ed-es", "sampling": "floor", "size": 128, "frames": 10,
                                          "gray": "channel", "tracing_rows": "first", "mask_fill": "skimage"}
    assert overridden == []
    with pytest.raises(GdkvmError, match="data protocol"):
        resolve_protocol("cutie", ECHONET_PROTOCOLS, ECHONET_DEFAULTS, NO_ECHONET)


def _echonet_raw(tmp_path):
    # V1: ED 5 -> ES 20; V2 (TEST): ES 3 is earlier than ED 17, so the clip orders differ
    return write_echonet_dataset(tmp_path / "raw", [EchoVideoSpec("V1"), EchoVideoSpec("V2", split="TEST", ed=17, es=3)])


def _meta(out, dataset):
    return json.loads((out / dataset / "store.json").read_text())


@pytest.mark.parametrize("protocol", ["gdkvm", "memsam"])
def test_prepare_echonet_protocol_builds_the_protocol_store(tmp_path, protocol):
    _echonet_raw(tmp_path)
    out = tmp_path / protocol
    prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", out, protocol=protocol, strict=True)
    meta = _meta(out, "echonet")
    assert meta["options"] == {**DOCUMENTED_ECHONET[protocol], "protocol": protocol}
    assert any(n.startswith(f"protocol '{protocol}': every option") for n in meta["notes"])
    size = DOCUMENTED_ECHONET[protocol]["size"]
    test = open_store(out / "echonet", "test")
    assert test.images.shape == (1, 10, size, size)
    indices = [int(v) for v in test.manifest["frame_indices"].iloc[0].split()]
    if protocol == "gdkvm":  # forward cyclic ED 17 -> ES 3 in 30 frames, rint
        assert indices == sample_indices(17, 3, 10, "rint", n_frames=30).tolist()
        assert test.manifest["phase_first"].tolist() == ["ED"]
    else:  # earlier (ES 3) -> later (ED 17), floor
        assert indices == sample_indices(3, 17, 10, "floor").tolist()
        assert test.manifest["phase_first"].tolist() == ["ES"]


def test_prepare_echonet_explicit_option_overrides_and_is_noted(tmp_path):
    _echonet_raw(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "echonet", "--root", str(tmp_path / "raw" / "EchoNet-Dynamic"), "--out", str(out),
                                 "--protocol", "memsam", "--size", "32", "--clip", "ed-es", "--strict"])
    assert result.exit_code == 0, result.output
    meta = _meta(out, "echonet")
    assert meta["options"] == {**DOCUMENTED_ECHONET["memsam"], "size": 32, "clip": "ed-es", "protocol": "memsam"}
    note = next(n for n in meta["notes"] if n.startswith("protocol 'memsam'"))
    assert "size=32 (protocol: 256)" in note and "clip='ed-es'" in note and "not exactly" in note
    assert open_store(out / "echonet", "train").images.shape[2:] == (32, 32)
    assert runner.invoke(app, ["prepare", "echonet", "--root", str(tmp_path / "raw" / "EchoNet-Dynamic"), "--out", str(out),
                               "--protocol", "cutie"]).exit_code == 2


def test_no_protocol_is_recorded_as_none(tmp_path):
    _echonet_raw(tmp_path)
    prepare_echonet(tmp_path / "raw" / "EchoNet-Dynamic", tmp_path / "out", size=16)
    meta = _meta(tmp_path / "out", "echonet")
    assert meta["options"] == {**ECHONET_DEFAULTS, "size": 16, "protocol": None}
    assert not any(n.startswith("protocol") for n in meta["notes"])


@pytest.mark.parametrize("protocol", ["gdkvm", "memsam"])
def test_prepare_camus_protocol_and_override(tmp_path, protocol):
    write_camus_dataset(tmp_path / "raw", patients=3, splits=(1, 1, 1))
    prepare_camus(tmp_path / "raw" / "CAMUS_public", tmp_path / "a", protocol=protocol, strict=True)
    assert _meta(tmp_path / "a", "camus")["options"] == {**DOCUMENTED_CAMUS[protocol], "protocol": protocol}
    result = runner.invoke(app, ["prepare", "camus", "--root", str(tmp_path / "raw" / "CAMUS_public"), "--out",
                                 str(tmp_path / "b"), "--protocol", protocol, "--size", "24",
                                 "--sampling", "floor", "--strict"])
    assert result.exit_code == 0, result.output
    meta = _meta(tmp_path / "b", "camus")
    assert meta["options"] == {**DOCUMENTED_CAMUS[protocol], "size": 24, "sampling": "floor",
                               "protocol": protocol}
    note = next(n for n in meta["notes"] if n.startswith(f"protocol '{protocol}'"))
    assert "size=24" in note and ("sampling='floor'" in note) == (protocol == "gdkvm")


def test_gray_luma_is_opencv_bgr2gray(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    path = tmp_path / "colour.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (32, 24))
    for _ in range(3):
        frame = np.zeros((24, 32, 3), np.uint8)
        frame[..., 0], frame[..., 1], frame[..., 2] = 40, 120, 220  # B, G, R differ
        frame[::2] = rng.integers(0, 255, (12, 32, 3), dtype=np.uint8)
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    decoded = np.stack(decoded)
    luma = echonet.load_video(path, gray="luma")
    channel = echonet.load_video(path)
    assert np.array_equal(luma, np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in decoded]))
    assert np.array_equal(channel, decoded[..., 0])
    assert not np.array_equal(luma, channel)
    with pytest.raises(ValueError, match="grey conversion"):
        echonet.load_video(path, gray="mean")


def test_mask_fill_cv2_is_fillpoly_and_a_superset_of_skimage(tmp_path):
    """``cv2`` fills the rounded polygon as cv2.fillPoly does (outline included, the re-release);
    ``skimage`` keeps pixel centres strictly inside (echonet/dynamic): a strict superset of it."""
    import cv2
    from skimage.draw import polygon as sk_polygon

    _echonet_raw(tmp_path)
    root = tmp_path / "raw" / "EchoNet-Dynamic"
    index = echonet.index_echonet(root, "first")
    tracing = index.entries[0].tracings[0]
    x, y = tracing.polygon()
    shape = (112, 112)
    expected_cv2 = np.zeros(shape, np.uint8)
    cv2.fillPoly(expected_cv2, [np.stack([np.rint(x), np.rint(y)], 1).astype(np.int32)], 1)
    rr, cc = sk_polygon(np.rint(y).astype(int), np.rint(x).astype(int), shape)
    expected_sk = np.zeros(shape, np.uint8)
    expected_sk[rr, cc] = 1
    filled_cv2, filled_sk = tracing.mask(shape, "cv2"), tracing.mask(shape, "skimage")
    assert np.array_equal(filled_cv2, expected_cv2) and np.array_equal(filled_sk, expected_sk)
    assert np.array_equal(tracing.mask(shape), filled_sk)  # skimage stays the default
    assert (filled_cv2 >= filled_sk).all() and filled_cv2.sum() > filled_sk.sum()
    with pytest.raises(ValueError, match="mask fill"):
        tracing.mask(shape, "pil")

    # through prepare: the gdkvm protocol stores cv2-filled masks, an explicit --mask-fill overrides it
    prepare_echonet(root, tmp_path / "g", protocol="gdkvm", size=112, strict=True)
    prepare_echonet(root, tmp_path / "s", protocol="gdkvm", size=112, mask_fill="skimage", strict=True)
    g, s = open_store(tmp_path / "g" / "echonet", "train"), open_store(tmp_path / "s" / "echonet", "train")
    assert (g.masks[:, 0] >= s.masks[:, 0]).all() and g.masks[:, 0].sum() > s.masks[:, 0].sum()
    assert np.array_equal(g.images, s.images)
    note = next(n for n in _meta(tmp_path / "s", "echonet")["notes"] if n.startswith("protocol 'gdkvm'"))
    assert "mask_fill='skimage' (protocol: 'cv2')" in note
    result = runner.invoke(app, ["prepare", "echonet", "--root", str(root), "--out", str(tmp_path / "c"),
                                 "--mask-fill", "cv2", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert _meta(tmp_path / "c", "echonet")["options"]["mask_fill"] == "cv2"
