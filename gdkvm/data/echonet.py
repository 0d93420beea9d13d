"""Reader for EchoNet-Dynamic (``FileList.csv``, ``VolumeTracings.csv``, ``Videos/*.avi``), datasets.md §2.

Tracings: a traced frame normally has 21 rows, the first the LV long axis and then 20 disk chords.
About 0.5 % of real frames hold several tracings concatenated (42/63/84 rows) and a few have row counts
that are not a multiple of 21. Which rows make the mask polygon is the ``tracing_rows`` policy
(:data:`TRACING_ROWS`):

- ``"first"`` (default): the first 21 rows when the frame has at least 21, else all of them;
- ``"all"`` (the rows echonet/dynamic and the GDKVM re-release use): every row of the frame after the first. A
  frame traced twice then runs down each wall twice, and the even-odd fill of both tools leaves most of
  its mask hollow, which is why it is not the default;
- ``"exact"`` (MemSAM): only videos whose two traced frames have exactly 21 rows are used; the
  others are skipped and listed (not bad cases).

A frame with fewer than 3 rows is a problem under every policy. The mask polygon is the X1 ends of the
chords followed by the X2 ends in reverse (same for Y), rounded to integers and filled with
``skimage.draw.polygon`` as echonet/dynamic and MemSAM do. The GDKVM re-release fills the same polygon
with ``cv2.fillPoly``, which also sets the boundary pixels, so its masks are not bit for bit these
(about 0.98 Dice between the two). ED is the traced frame whose first tracing
(its first 21 rows) has the larger polygon area and ES the other one, under every policy; the row
order is never trusted. Tracings without a FileList row (one in the real dataset) are listed apart
and ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from gdkvm.data.sampling import SamplingRule, sample_indices
from gdkvm.errors import DataError

ECHONET_DIRNAME = "EchoNet-Dynamic"
FILELIST_COLUMNS = (
    "FileName",
    "EF",
    "ESV",
    "EDV",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Split",
)
FILELIST_NUMERIC = ("EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
ROWS_PER_TRACING = 21
#: Fewer rows than half a full tracing give a sliver polygon whose area swaps ED and ES.
MIN_TRACING_ROWS = ROWS_PER_TRACING // 2 + 1
SPLIT_NAMES = {"TRAIN": "train", "VAL": "val", "TEST": "test"}

ClipForm = Literal["ed-es", "earlier-later"]
CLIP_FORMS: tuple[str, ...] = get_args(ClipForm)
TracingRows = Literal["all", "first", "exact"]
TRACING_ROWS: tuple[str, ...] = get_args(TracingRows)


def _check_tracing_rows(tracing_rows: str) -> None:
    if tracing_rows not in TRACING_ROWS:
        raise ValueError(f"unknown tracing_rows {tracing_rows!r}; valid: {', '.join(TRACING_ROWS)}")


def is_echonet_folder(folder: Path) -> bool:
    """True when ``folder`` is an EchoNet-Dynamic dataset folder (it holds ``FileList.csv``)."""
    return (folder / "FileList.csv").is_file()


def find_echonet_root(root: str | Path, *, search_below: bool = False) -> Path:
    """The EchoNet-Dynamic folder ``root`` (absolute, resolved): the folder holding ``FileList.csv``.

    With ``search_below`` a single EchoNet folder up to two levels below ``root`` is taken when ``root`` is
    not one. Otherwise (or when none or several are found) a one-line :class:`DataError` says what was
    expected (see :func:`gdkvm.data.prepare_toolkit.find_dataset_folder`).
    """
    from gdkvm.data.prepare_toolkit import find_dataset_folder

    return find_dataset_folder(root, is_dataset=is_echonet_folder, dataset="EchoNet-Dynamic",
                               expected="FileList.csv", usual_name=ECHONET_DIRNAME,
                               search_below=search_below)


def _read_csv_as_text(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError, ...
        detail = " ".join(str(e).split())[:120]
        raise DataError(path, f"cannot parse CSV ({type(e).__name__}: {detail})") from None


def _numeric_problems(
    path: Path, table: pd.DataFrame, columns: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Convert ``columns`` to float; return the converted table and {row position: problem}."""
    problems: dict[int, str] = {}
    converted = table.copy()
    for col in columns:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=np.float64)))
        for pos in bad.tolist():
            problems.setdefault(pos, f"line {pos + 2}: non-numeric {col} {table[col].iloc[pos][:30]!r}")
        converted[col] = values
    return converted, problems


@dataclass(frozen=True)
class FileListEntry:
    """One FileList row (numbers validated)."""

    file_name: str
    split: str
    ef: float
    esv: float
    edv: float
    frame_height: int
    frame_width: int
    fps: float
    n_frames: int


def _video_stems(names: pd.Series) -> pd.Series:
    """FileName values without surrounding blanks and without a ``.avi`` suffix (any case)."""
    names = names.str.strip()
    return names.where(~names.str.lower().str.endswith(".avi"), names.str[:-4])


def read_filelist(path: str | Path) -> tuple[dict[str, FileListEntry], list[DataError]]:
    """Read ``FileList.csv``: {FileName without extension: entry} plus one DataError per bad row.

    A missing or wrong header is fatal (raised). Rows with non-numeric fields, an unknown ``Split``
    or a duplicate FileName are returned as problems and left out.
    """
    entries, problems, _ = _read_filelist(Path(path))
    return entries, problems


def _read_filelist(path: Path) -> tuple[dict[str, FileListEntry], list[DataError], set[str]]:
    """:func:`read_filelist` plus every FileName listed, malformed rows included (without ``.avi``)."""
    table = _read_csv_as_text(path)
    missing = [c for c in FILELIST_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            path, f"missing column(s) {', '.join(missing)}; header is {','.join(map(str, table.columns))}"
        )
    converted, row_problems = _numeric_problems(path, table, FILELIST_NUMERIC)
    names = _video_stems(table["FileName"])
    entries: dict[str, FileListEntry] = {}
    problems: list[DataError] = []
    for pos in range(len(table)):
        name = names.iloc[pos]
        if pos in row_problems:
            problems.append(DataError(path, f"{row_problems[pos]} ({name or 'no FileName'})"))
            continue
        if not name:
            problems.append(DataError(path, f"line {pos + 2}: empty FileName"))
            continue
        split = SPLIT_NAMES.get(table["Split"].iloc[pos].strip().upper())
        if split is None:
            problems.append(
                DataError(path, f"line {pos + 2}: unknown Split {table['Split'].iloc[pos][:20]!r} ({name})")
            )
            continue
        if name in entries:
            problems.append(DataError(path, f"line {pos + 2}: duplicate FileName {name}"))
            continue
        row = converted.iloc[pos]
        if not 0.0 <= float(row["EF"]) <= 100.0:
            problems.append(DataError(path, f"line {pos + 2}: EF {float(row['EF']):g} is outside 0-100 % ({name})"))
            continue
        entries[name] = FileListEntry(
            file_name=name,
            split=split,
            ef=float(row["EF"]),
            esv=float(row["ESV"]),
            edv=float(row["EDV"]),
            frame_height=int(row["FrameHeight"]),
            frame_width=int(row["FrameWidth"]),
            fps=float(row["FPS"]),
            n_frames=int(row["NumberOfFrames"]),
        )
    return entries, problems, set(names.tolist())


def _polygon(chords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([chords[:, 0], chords[::-1, 2]])
    y = np.concatenate([chords[:, 1], chords[::-1, 3]])
    return x, y


def _shoelace(x: np.ndarray, y: np.ndarray) -> float:
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class FrameTracing:
    """The tracing of one frame: ``coords`` (R, 4) float64, every CSV row (X1, Y1, X2, Y2) of the frame.

    Normally R = 21: row 0 the long axis, rows 1..20 the disk chords. R = 42/63/84 when the CSV held
    the frame several times; a few real frames have other counts. ``rows`` is the policy that picks the
    polygon rows (see :data:`TRACING_ROWS` and the module docstring).
    """

    frame: int
    coords: np.ndarray
    rows: TracingRows = "first"

    @property
    def n_rows(self) -> int:
        return int(self.coords.shape[0])

    def chords(self) -> np.ndarray:
        """The rows making the polygon: all rows after the first (``"all"``, ``"exact"``), or rows
        1..20 of the first tracing (``"first"``; every row after the first when R < 21)."""
        rows = self.coords[:ROWS_PER_TRACING] if self.rows == "first" else self.coords
        return rows[1:]

    def polygon(self) -> tuple[np.ndarray, np.ndarray]:
        """Polygon vertices (x, y), each (2 * chords,): X1 of the chords, then X2 of the chords reversed.

        40 vertices for a 21-row frame; 82 for a 42-row frame under ``"all"``, 40 under ``"first"``.
        Under ``"all"`` a 42-row polygon runs down each wall twice, so its even-odd fill (``mask``,
        like skimage in echonet/dynamic and cv2.fillPoly in the re-release) is largely hollow.
        """
        return _polygon(self.chords())

    def area(self) -> float:
        """Shoelace area of the policy's polygon in pixels^2 (float coordinates, no rounding)."""
        return _shoelace(*self.polygon())

    def first_tracing_area(self) -> float:
        """Shoelace area of the first tracing's polygon (rows 2..21, or every row after the first when
        R < 21), whatever the policy. ED/ES are chosen by it: the area of a repeated-tracing polygon
        (about twice the true one) or of its hollow mask would misorder them."""
        return _shoelace(*_polygon(self.coords[:ROWS_PER_TRACING][1:]))

    def mask(self, shape: tuple[int, int], fill: MaskFill = "skimage") -> np.ndarray:
        """Rasterise the polygon (vertices rounded to the nearest pixel) on an (H, W) grid -> uint8 {0, 1};
        outside points are clipped. ``fill`` (:data:`MASK_FILLS`): ``skimage`` (``skimage.draw.polygon``,
        pixel centres strictly inside, as echonet/dynamic and MemSAM) or ``cv2`` (``cv2.fillPoly``, which
        also sets the pixels the outline passes through, as the GDKVM re-release)."""
        if fill not in MASK_FILLS:
            raise ValueError(f"unknown mask fill {fill!r}; valid: {', '.join(MASK_FILLS)}")
        x, y = self.polygon()
        out = np.zeros(shape, dtype=np.uint8)
        if fill == "cv2":
            import cv2

            cv2.fillPoly(out, [np.stack([np.rint(x), np.rint(y)], axis=1).astype(np.int32)], 1)
            return out
        from skimage.draw import polygon as fill_polygon

        rows, cols = fill_polygon(np.rint(y).astype(np.int64), np.rint(x).astype(np.int64), shape)
        out[rows, cols] = 1
        return out

    def disk_volume(self) -> float:
        """Single-plane method of disks in pixel units: V = pi/4 * sum(d_i^2) * L / 20.

        Uses the first tracing's 21 rows whatever the policy; NaN when the frame has fewer than 21 rows.
        """
        if self.n_rows < ROWS_PER_TRACING:
            return math.nan
        long_axis = self.coords[0]
        length = math.hypot(long_axis[2] - long_axis[0], long_axis[3] - long_axis[1])
        chords = self.coords[1:ROWS_PER_TRACING]
        diameters_sq = (chords[:, 2] - chords[:, 0]) ** 2 + (chords[:, 3] - chords[:, 1]) ** 2
        return float(math.pi / 4.0 * diameters_sq.sum() * length / (ROWS_PER_TRACING - 1))


@dataclass
class TracingTable:
    """Grouped ``VolumeTracings.csv``: per video (FileName without ``.avi``), its traced frames in
    file order, plus the problems found (one DataError per bad video) and counts of quirks over the
    whole file: frames with several 21-row tracings (42/63/84 rows) and frames whose row count is not
    a multiple of 21."""

    path: Path
    videos: dict[str, list[FrameTracing]] = field(default_factory=dict)
    problems: dict[str, DataError] = field(default_factory=dict)
    multi_tracing_frames: int = 0
    odd_row_frames: int = 0


def read_tracings(path: str | Path, tracing_rows: TracingRows = "first") -> TracingTable:
    """Read and group ``VolumeTracings.csv`` by FileName and Frame; every row of a frame is kept.

    The header must be exactly ``FileName,X1,Y1,X2,Y2,Frame`` (raised otherwise). A video with a
    non-numeric field, a negative or fractional frame, or a frame with fewer than 3 rows is recorded
    in ``problems`` and gets no tracings. ``tracing_rows`` is stored in each :class:`FrameTracing`;
    skipping videos under ``"exact"`` is :func:`index_echonet`'s job.
    """
    _check_tracing_rows(tracing_rows)
    path = Path(path)
    table = _read_csv_as_text(path)
    header = tuple(str(c).strip() for c in table.columns)
    if header != TRACING_COLUMNS:
        raise DataError(path, f"header {','.join(header)} is not {','.join(TRACING_COLUMNS)}")
    table.columns = list(TRACING_COLUMNS)
    result = TracingTable(path=path)
    names = _video_stems(table["FileName"])
    converted, row_problems = _numeric_problems(path, table, TRACING_COLUMNS[1:])
    frames = converted["Frame"].to_numpy(dtype=np.float64)
    for pos in np.flatnonzero(np.isfinite(frames) & ((frames < 0) | (frames != np.floor(frames)))).tolist():
        row_problems.setdefault(pos, f"line {pos + 2}: invalid Frame {table['Frame'].iloc[pos]!r}")
    for pos, problem in sorted(row_problems.items()):
        name = names.iloc[pos]
        result.problems.setdefault(name, DataError(path, f"{problem} ({name}.avi)"))
    coords = converted[list(TRACING_COLUMNS[1:5])].to_numpy(dtype=np.float64)
    grouped: dict[str, dict[int, list[int]]] = {}
    for pos, (name, frame) in enumerate(zip(names.tolist(), frames.tolist(), strict=True)):
        if name in result.problems:
            continue
        grouped.setdefault(name, {}).setdefault(int(frame), []).append(pos)
    for name, by_frame in grouped.items():
        tracings = []
        multi = odd = 0
        for frame, rows in by_frame.items():
            count = len(rows)
            if count < MIN_TRACING_ROWS:
                result.problems[name] = DataError(
                    path,
                    f"{name}.avi frame {frame}: {count} row(s), a tracing needs at least {MIN_TRACING_ROWS} "
                    f"of its {ROWS_PER_TRACING} (long axis and 20 chords)",
                )
                break
            if count % ROWS_PER_TRACING:
                odd += 1
            elif count > ROWS_PER_TRACING:
                multi += 1
            tracings.append(FrameTracing(frame, coords[rows].copy(), tracing_rows))
        else:
            result.videos[name] = tracings
            result.multi_tracing_frames += multi
            result.odd_row_frames += odd
    return result


#: How a decoded BGR frame becomes one grey channel: ``"channel"`` keeps the first decoded channel (the
#: videos store grey as RGB, so the channels agree up to JPEG chroma noise); ``"luma"`` is OpenCV's
#: ``cvtColor(BGR2GRAY)`` (0.299 R + 0.587 G + 0.114 B, rounded), as the GDKVM re-release converts frames.
GrayMode = Literal["channel", "luma"]
GRAY_MODES: tuple[str, ...] = get_args(GrayMode)
#: How a tracing polygon becomes a mask (:meth:`FrameTracing.mask`).
MaskFill = Literal["skimage", "cv2"]
MASK_FILLS: tuple[str, ...] = get_args(MaskFill)


def load_video(path: str | Path, gray: GrayMode = "channel") -> np.ndarray:
    """Decode an AVI with OpenCV -> (F, H, W) uint8 grey frames (``gray``: see :data:`GRAY_MODES`)."""
    import cv2

    if gray not in GRAY_MODES:
        raise ValueError(f"unknown grey conversion {gray!r}; valid: {', '.join(GRAY_MODES)}")
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "video file not found")
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        if not capture.isOpened():
            raise DataError(path, "video does not decode (OpenCV cannot open it)")
        while True:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if gray == "luma" else frame[:, :, 0]
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise DataError(path, "video does not decode (0 frames)")
    return np.ascontiguousarray(np.stack(frames).astype(np.uint8, copy=False))


@dataclass(frozen=True)
class EchoEntry:
    """A video ready to load: its FileList row, its two traced frames and the AVI path."""

    info: FileListEntry
    video_path: Path
    tracings: tuple[FrameTracing, FrameTracing]


@dataclass
class EchoIndex:
    """The usable videos of an EchoNet folder and what was left out.

    ``problems``: bad cases, one DataError per video (missing AVI, malformed rows, ...). Not problems
    (skipped and listed, never fatal): ``untraced``, FileList videos without any tracing;
    ``orphan_tracings``, tracings whose FileName has no FileList row (real data: one, with no video);
    ``skipped_rows``, videos left out by ``tracing_rows="exact"`` because a traced frame does not have
    exactly 21 rows. Names have no ``.avi``. ``multi_tracing_frames`` / ``odd_row_frames`` count the
    traced frames of ``entries`` with 42/63/84 rows / a row count not a multiple of 21.
    """

    root: Path
    entries: list[EchoEntry]
    problems: list[DataError]
    untraced: list[str]
    multi_tracing_frames: int
    odd_row_frames: int = 0
    orphan_tracings: list[str] = field(default_factory=list)
    skipped_rows: list[str] = field(default_factory=list)
    tracing_rows: TracingRows = "first"


def index_echonet(root: Path, tracing_rows: TracingRows = "first") -> EchoIndex:
    """Join FileList, VolumeTracings and the Videos folder into usable entries, sorted by FileName.

    Tracings of FileNames absent from FileList go to ``orphan_tracings`` (those of a FileList row that
    is itself malformed are dropped silently: the row is already a problem). Under
    ``tracing_rows="exact"`` a video whose two traced frames do not both have 21 rows goes to
    ``skipped_rows``.
    """
    root = Path(root)
    filelist, problems, listed = _read_filelist(root / "FileList.csv")
    tracings = read_tracings(root / "VolumeTracings.csv", tracing_rows)
    videos_dir = root / "Videos"
    entries: list[EchoEntry] = []
    untraced: list[str] = []
    skipped_rows: list[str] = []
    orphans = sorted(n for n in set(tracings.videos) | set(tracings.problems) if n not in listed)
    for name in sorted(filelist):
        info = filelist[name]
        if name in tracings.problems:
            problems.append(tracings.problems[name])
            continue
        frames = tracings.videos.get(name)
        if not frames:
            untraced.append(name)
            continue
        if len(frames) != 2:
            listed = ", ".join(str(t.frame) for t in frames)
            problems.append(
                DataError(
                    tracings.path, f"{name}.avi has {len(frames)} traced frame(s) ({listed}), expected 2"
                )
            )
            continue
        if tracing_rows == "exact" and any(t.n_rows != ROWS_PER_TRACING for t in frames):
            skipped_rows.append(name)
            continue
        video_path = videos_dir / f"{name}.avi"
        if not video_path.is_file():
            problems.append(DataError(video_path, "video file not found"))
            continue
        entries.append(EchoEntry(info=info, video_path=video_path, tracings=(frames[0], frames[1])))
    row_counts = [t.n_rows for e in entries for t in e.tracings]
    return EchoIndex(
        root=root,
        entries=entries,
        problems=problems,
        untraced=untraced,
        multi_tracing_frames=sum(n > ROWS_PER_TRACING and n % ROWS_PER_TRACING == 0 for n in row_counts),
        odd_row_frames=sum(n % ROWS_PER_TRACING != 0 for n in row_counts),
        orphan_tracings=orphans,
        skipped_rows=skipped_rows,
        tracing_rows=tracing_rows,
    )


@dataclass(frozen=True)
class EchoCase:
    """One decoded EchoNet video with its ED/ES masks.

    Attributes:
        video: (F, H, W) uint8.
        ed_frame, es_frame: video frame indices (ED = larger traced area).
        ed_mask, es_mask: (H, W) uint8 {0, 1} rasterised at the video size.
    """

    case_id: str
    info: FileListEntry
    video_path: Path
    video: np.ndarray
    ed_frame: int
    es_frame: int
    ed_mask: np.ndarray
    es_mask: np.ndarray
    ed_tracing: FrameTracing
    es_tracing: FrameTracing

    @property
    def n_frames(self) -> int:
        return int(self.video.shape[0])


def load_echonet_case(entry: EchoEntry, gray: GrayMode = "channel", mask_fill: MaskFill = "skimage") -> EchoCase:
    """Decode the video (``gray``: see :data:`GRAY_MODES`), check the traced frames against it, and pick
    ED/ES by polygon area (of the first tracing of each frame, :meth:`FrameTracing.first_tracing_area`;
    the row order is not used). Masks are filled with ``mask_fill`` (:meth:`FrameTracing.mask`)."""
    video = load_video(entry.video_path, gray)
    n_frames = video.shape[0]
    first, second = entry.tracings
    for tracing in (first, second):
        if tracing.frame >= n_frames:
            raise DataError(
                entry.video_path, f"traced frame {tracing.frame} >= decoded frame count {n_frames}"
            )
    if entry.info.n_frames != n_frames:
        raise DataError(entry.video_path, f"decodes to {n_frames} frames, but FileList.csv NumberOfFrames "
                        f"says {entry.info.n_frames}")
    area_first, area_second = first.first_tracing_area(), second.first_tracing_area()
    if area_first == area_second:
        raise DataError(entry.video_path, f"traced frames {first.frame} and {second.frame} have equal area")
    ed, es = (first, second) if area_first > area_second else (second, first)
    shape = (int(video.shape[1]), int(video.shape[2]))
    return EchoCase(
        case_id=entry.info.file_name,
        info=entry.info,
        video_path=entry.video_path,
        video=video,
        ed_frame=ed.frame,
        es_frame=es.frame,
        ed_mask=ed.mask(shape, mask_fill),
        es_mask=es.mask(shape, mask_fill),
        ed_tracing=ed,
        es_tracing=es,
    )


def clip_indices(
    case: EchoCase, n: int = 10, rule: SamplingRule = "floor", form: ClipForm = "ed-es"
) -> tuple[np.ndarray, bool]:
    """Video frame indices of the clip and whether position 0 is ED.

    ``'ed-es'`` (GDKVM re-release): forward from ED to ES, cyclic modulo the frame count, so
    position 0 is ED and position n-1 is ES. ``'earlier-later'`` (MemSAM): from the earlier traced
    frame to the later one, so position 0 is ES when ES comes first.
    """
    if form == "ed-es":
        return sample_indices(case.ed_frame, case.es_frame, n, rule, n_frames=case.n_frames), True
    if form == "earlier-later":
        first, last = sorted((case.ed_frame, case.es_frame))
        return sample_indices(first, last, n, rule), first == case.ed_frame
    raise ValueError(f"unknown clip form {form!r}; valid: {', '.join(CLIP_FORMS)}")
