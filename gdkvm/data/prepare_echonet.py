"""EchoNet-Dynamic -> prepared store (:func:`prepare_echonet`); the store format is in :mod:`gdkvm.data.store`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from gdkvm.data import echonet
from gdkvm.data.echonet import ClipForm, GrayMode, MaskFill, TracingRows
from gdkvm.data.prepare_toolkit import (
    bad_case,
    check_common_options,
    check_up_to_date,
    first_names,
    format_indices,
    is_phantom_root,
    resize_frame,
)
from gdkvm.data.sampling import SamplingRule
from gdkvm.data.store import (
    ECHONET_VOLUME_METHOD,
    BadCase,
    PrepareSummary,
    Progress,
    StoreClip,
    write_store,
)
from gdkvm.errors import DataError, unknown_name

__all__ = [
    "ECHONET_DEFAULTS",
    "ECHONET_PROTOCOLS",
    "PROTOCOLS",
    "Protocol",
    "EchonetPrepareOptions",
    "prepare_echonet",
    "resolve_protocol",
]

#: Data protocols: one name that sets every option its source fixes (docs/store.md "Protocols").
Protocol = Literal["gdkvm", "memsam"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)

#: ``gdkvm``: the GDKVM re-release (``gdkvm_data/echonet.py``): forward cyclic ED -> ES, ``rint`` sampling,
#: 128 px, frames converted with ``cvtColor(BGR2GRAY)``, every tracing row after the first in the polygon,
#: polygons filled with ``cv2.fillPoly`` (outline pixels included).
#: ``memsam``: MemSAM (``utils/preprocess_echonet.py``, ``load_video_and_mask_file``): earlier -> later
#: traced frame, ``floor`` sampling, 256 px (its encoder input size), videos with exactly 21 rows per
#: traced frame only; MemSAM keeps the 3 decoded channels, which are grey stored as RGB, so the
#: one-channel store keeps the first one; polygons filled with ``skimage.draw.polygon``.
ECHONET_PROTOCOLS: dict[str, dict[str, Any]] = {
    "gdkvm": {"clip": "ed-es", "sampling": "rint", "size": 128, "frames": 10, "gray": "luma",
              "tracing_rows": "all", "mask_fill": "cv2"},
    "memsam": {"clip": "earlier-later", "sampling": "floor", "size": 256, "frames": 10, "gray": "channel",
               "tracing_rows": "exact", "mask_fill": "skimage"},
}

#: Without a protocol (gdkvm <= 0.1 defaults; note that they mix the re-release clip order with
#: MemSAM's sampling).
ECHONET_DEFAULTS: dict[str, Any] = {"clip": "ed-es", "sampling": "floor", "size": 128, "frames": 10,
                                    "gray": "channel", "tracing_rows": "first", "mask_fill": "skimage"}


def resolve_protocol(
    protocol: str | None,
    table: dict[str, dict[str, Any]],
    defaults: dict[str, Any],
    explicit: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Options from a protocol: an explicit (non-None) value wins over the protocol, the protocol over
    the defaults. Returns the options and the names of the protocol settings an explicit value changed."""
    if protocol is not None and protocol not in table:
        raise unknown_name("data protocol", str(protocol), tuple(table))
    preset = table[protocol] if protocol is not None else {}
    values = {**defaults, **preset}
    overridden = []
    for name, value in explicit.items():
        if value is None:
            continue
        if name in preset and preset[name] != value:
            overridden.append(name)
        values[name] = value
    return values, overridden


def protocol_note(protocol: str | None, table: dict[str, dict[str, Any]], values: dict[str, Any],
                  overridden: list[str]) -> list[str]:
    """The store.json note that names the protocol and what explicit options changed in it."""
    if protocol is None:
        return []
    if not overridden:
        return [f"protocol '{protocol}': every option as its source"]
    changed = ", ".join(f"{n}={values[n]!r} (protocol: {table[protocol][n]!r})" for n in overridden)
    return [f"protocol '{protocol}' with explicit options overriding it: {changed}; the store is not "
            f"exactly the {protocol} protocol"]


@dataclass(frozen=True)
class EchonetPrepareOptions:
    """How EchoNet clips are built: ``clip='ed-es'`` (cyclic forward ED->ES, GDKVM re-release) or
    ``'earlier-later'`` (MemSAM: earlier traced frame first). ``tracing_rows`` picks the mask rows of
    traced frames that do not have exactly 21 rows: ``'all'`` (echonet/dynamic and the re-release:
    every row after the first), ``'first'`` (the first 21 rows) or ``'exact'`` (MemSAM: skip the
    video unless both traced frames have exactly 21 rows); see :mod:`gdkvm.data.echonet`. ``gray``:
    ``'channel'`` (first decoded channel) or ``'luma'`` (``cvtColor(BGR2GRAY)``, re-release). ``mask_fill``:
    ``'skimage'`` (echonet/dynamic, MemSAM) or ``'cv2'`` (``cv2.fillPoly``, re-release; outline included).
    ``protocol``: the :data:`ECHONET_PROTOCOLS` entry the options came from, or None."""

    size: int = 128
    sampling: SamplingRule = "floor"
    clip: ClipForm = "ed-es"
    frames: int = 10
    tracing_rows: TracingRows = "first"
    gray: GrayMode = "channel"
    mask_fill: MaskFill = "skimage"
    protocol: Protocol | None = None


def _check_echonet_options(opts: EchonetPrepareOptions) -> None:
    check_common_options(opts.size, opts.sampling, opts.frames)
    if opts.gray not in echonet.GRAY_MODES:
        raise unknown_name("grey conversion", str(opts.gray), echonet.GRAY_MODES)
    if opts.clip not in echonet.CLIP_FORMS:
        raise unknown_name("clip form", str(opts.clip), echonet.CLIP_FORMS)
    if opts.tracing_rows not in echonet.TRACING_ROWS:
        raise unknown_name("tracing-rows policy", str(opts.tracing_rows), echonet.TRACING_ROWS)
    if opts.mask_fill not in echonet.MASK_FILLS:
        raise unknown_name("mask fill", str(opts.mask_fill), echonet.MASK_FILLS)


# ----------------------------------------------------------------------------------------------
# EchoNet


def _echonet_clip(
    case: echonet.EchoCase, opts: EchonetPrepareOptions, tracings_path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Sample, resize and check one EchoNet video -> (images, masks, labeled, manifest row)."""
    indices, ed_first = echonet.clip_indices(case, opts.frames, opts.sampling, opts.clip)
    first_mask, last_mask = (case.ed_mask, case.es_mask) if ed_first else (case.es_mask, case.ed_mask)
    size = opts.size
    images = np.stack([resize_frame(case.video[i], size, nearest=False) for i in indices])
    masks = np.zeros((opts.frames, size, size), dtype=np.uint8)
    masks[0] = resize_frame(first_mask, size, nearest=True)
    masks[-1] = resize_frame(last_mask, size, nearest=True)
    for pos, frame in ((0, int(indices[0])), (opts.frames - 1, int(indices[-1]))):
        if not masks[pos].any():
            raise DataError(tracings_path, f"{case.case_id}.avi frame {frame}: empty LV mask")
    labeled = np.zeros(opts.frames, dtype=bool)
    labeled[[0, -1]] = True
    info = case.info
    # NaN when a traced frame has fewer than 21 rows (tracing_rows 'all'/'first'): NaN gt_* in the manifest
    gt_edv, gt_esv = case.ed_tracing.disk_volume(), case.es_tracing.disk_volume()
    if math.isfinite(gt_edv) and not gt_edv > 0:
        raise DataError(
            tracings_path, f"{case.case_id}.avi frame {case.ed_frame}: ED tracing has zero volume"
        )
    row = {
        "case_id": case.case_id,
        "patient": case.case_id,
        "view": "4CH",
        "source": "echonet",
        "split": info.split,
        "frame_indices": format_indices(indices),
        "n_source_frames": case.n_frames,
        "ed_index": case.ed_frame,
        "es_index": case.es_frame,
        "phase_first": "ED" if ed_first else "ES",
        "source_height": int(case.video.shape[1]),
        "source_width": int(case.video.shape[2]),
        "spacing_row_mm": math.nan,
        "spacing_col_mm": math.nan,
        "spacing_unit": "px",
        "ef": info.ef,
        "edv": info.edv,
        "esv": info.esv,
        "image_quality": "",
        "fps": info.fps,
        "gt_edv": gt_edv,
        "gt_esv": gt_esv,
        "gt_ef": 100.0 * (gt_edv - gt_esv) / gt_edv if math.isfinite(gt_edv) else math.nan,
        "gt_volume_method": ECHONET_VOLUME_METHOD,
    }
    return images, masks, labeled, row


def _echonet_notes(index: echonet.EchoIndex) -> list[str]:
    """store.json notes on the tracing quirks: orphan tracings, multi-tracing and odd-count frames (what
    the ``tracing_rows`` policy did with them) and the videos that policy ``'exact'`` skipped."""
    notes = []
    if index.orphan_tracings:
        notes.append(
            f"{len(index.orphan_tracings)} tracing(s) without a FileList row ignored: "
            + first_names(index.orphan_tracings, suffix=".avi")
        )
    if index.tracing_rows == "exact":
        if index.skipped_rows:
            notes.append(
                f"{len(index.skipped_rows)} video(s) skipped by tracing_rows='exact' (MemSAM): a traced "
                "frame without exactly 21 rows (store.json skipped_tracing_rows): "
                + first_names(index.skipped_rows, suffix=".avi")
            )
        return notes
    used = {
        "all": "every row after the first made the mask polygon (echonet/dynamic, GDKVM re-release)",
        "first": "the first 21 rows made the mask polygon (all rows when fewer)",
    }[index.tracing_rows]
    first21 = "ED/ES and gt volumes use the first 21 rows"
    if index.multi_tracing_frames:
        hollow = ", whose even-odd fill leaves these masks largely hollow" * (index.tracing_rows == "all")
        notes.append(
            f"{index.multi_tracing_frames} traced frame(s) held repeated tracings (42/63/84 rows); "
            f"tracing_rows='{index.tracing_rows}': {used}{hollow}; {first21}"
        )
    if index.odd_row_frames:
        short = sum(t.n_rows < echonet.ROWS_PER_TRACING for e in index.entries for t in e.tracings)
        below = f" ({short} frame(s) with fewer than 21 rows: all rows for ED/ES, gt volumes NaN)"
        notes.append(
            f"{index.odd_row_frames} traced frame(s) have a row count that is not a multiple of 21; "
            f"tracing_rows='{index.tracing_rows}': {used}; {first21}" + (below if short else "")
        )
    return notes


def prepare_echonet(
    root: str | Path,
    out: str | Path,
    *,
    protocol: Protocol | None = None,
    size: int | None = None,
    sampling: SamplingRule | None = None,
    clip: ClipForm | None = None,
    frames: int | None = None,
    tracing_rows: TracingRows | None = None,
    gray: GrayMode | None = None,
    mask_fill: MaskFill | None = None,
    strict: bool = False,
    progress: Progress | None = None,
    search_below: bool = False,
) -> PrepareSummary:
    """Build ``out/echonet/{train,val,test}`` from EchoNet-Dynamic (splits from FileList ``Split``).

    ED/ES come from the tracing areas; ``frames`` frames run ED -> ES (``clip='ed-es'``, cyclic
    forward) or earlier -> later traced frame (``'earlier-later'``). Frames are resized bilinear and
    masks nearest to ``size``; masks exist at clip positions 0 and ``frames - 1`` only.
    ``tracing_rows`` picks the polygon rows of traced frames that do not have exactly 21 rows
    (:class:`EchonetPrepareOptions`). Untraced videos, tracings without a FileList row and videos
    skipped by ``tracing_rows='exact'`` are skipped and listed (never fatal); bad cases are skipped and
    listed, or fatal with ``strict=True``.

    ``root`` is the EchoNet-Dynamic folder (the one holding ``FileList.csv``); with ``search_below`` a
    single such folder up to two levels below it is taken instead
    (:func:`~gdkvm.data.prepare_toolkit.find_dataset_folder`). The folder read is recorded, absolute and
    resolved, as store.json ``source_root``.

    ``protocol`` (``'gdkvm'`` or ``'memsam'``, :data:`ECHONET_PROTOCOLS`) sets clip order, sampling,
    size, frames, grey conversion, tracing rows and mask fill as that source does; an option given explicitly (not
    None) overrides it. Without a protocol the unset options take :data:`ECHONET_DEFAULTS`. The protocol
    is recorded in store.json ``options``, with a note naming any override.
    """
    start = time.perf_counter()
    values, overridden = resolve_protocol(
        protocol, ECHONET_PROTOCOLS, ECHONET_DEFAULTS,
        {"size": size, "sampling": sampling, "clip": clip, "frames": frames, "tracing_rows": tracing_rows,
         "gray": gray, "mask_fill": mask_fill},
    )
    opts = EchonetPrepareOptions(**values, protocol=protocol)
    _check_echonet_options(opts)
    root = echonet.find_echonet_root(root, search_below=search_below)
    base = root.parent
    index = echonet.index_echonet(root, opts.tracing_rows)
    if strict and index.problems:
        raise index.problems[0]
    bad: list[BadCase] = [bad_case(e, base) for e in index.problems]
    notes = protocol_note(protocol, ECHONET_PROTOCOLS, values, overridden) + _echonet_notes(index)
    inputs = [root / "FileList.csv", root / "VolumeTracings.csv"] + [e.video_path for e in index.entries]
    total = len(inputs) + len(index.entries)
    report = progress or (lambda done, total: None)
    options = asdict(opts)
    hashes, digest, _, existing = check_up_to_date("echonet", inputs, total, report, options, base, out,
                                                   strict, start, source_root=root)
    if existing is not None:
        return existing

    tracings_path = root / "VolumeTracings.csv"

    def clips() -> Iterator[StoreClip]:
        for k, entry in enumerate(index.entries, start=1):
            try:
                case = echonet.load_echonet_case(entry, opts.gray, opts.mask_fill)
                images, masks, labeled, row = _echonet_clip(case, opts, tracings_path)
            except DataError as e:
                if strict:
                    raise
                bad.append(bad_case(e, base))
            else:
                row["source_sha256"] = hashes[entry.video_path]
                yield StoreClip(entry.info.split, images, masks, labeled, row)
            report(len(inputs) + k, total)

    summary = write_store(out, "echonet", clips(), frames=opts.frames, size=opts.size, source=root.name,
                          options=options, inputs_sha256=digest, bad_cases=bad, untraced=index.untraced,
                          notes=notes, phantom=is_phantom_root(root), source_root=root,
                          extra={"orphan_tracings": index.orphan_tracings,
                                 "skipped_tracing_rows": index.skipped_rows})
    summary.elapsed_s = time.perf_counter() - start
    return summary

