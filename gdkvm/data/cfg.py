"""Parser for the CAMUS ``Info_{2CH,4CH}.cfg`` files.

One ``Key: value`` pair per line. Two key sets exist and both are accepted:

- NIfTI release (2023+): ``ED, ES, NbFrame, Sex, Age, ImageQuality, EF, FrameRate``;
- 2019 MHD release: ``ED, ES, NbFrame, Sex, Age, ImageQuality, LVedv, LVesv, LVef``.

``ED`` and ``ES`` are 1-based frame numbers inside the half sequence.

Required keys (ED, ES, NbFrame) must be valid or the case is rejected. Optional values that are empty or
unreadable (``Age:``, ``EF: nan``) become None with a warning, as other CAMUS readers ignore them; a line
repeated with the same value is accepted, a key repeated with another value is an error; a UTF-8 byte
order mark is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from gdkvm.errors import DataError

REQUIRED_KEYS = ("ED", "ES", "NbFrame")


@dataclass(frozen=True)
class CamusInfo:
    """The parsed content of one Info_*.cfg file (frame numbers kept 1-based, as in the file).

    ``ef`` comes from ``EF`` (NIfTI release) or ``LVef`` (2019 release); ``edv``/``esv`` (mL) exist
    only in the 2019 release. Missing optional values are ``None``.
    """

    ed: int
    es: int
    nb_frame: int
    sex: str | None = None
    age: int | None = None
    image_quality: str | None = None
    ef: float | None = None
    frame_rate: float | None = None
    edv: float | None = None
    esv: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: Optional values that could not be read (set to None instead of rejecting the case).
    warnings: tuple[str, ...] = ()


def _split_lines(path: Path, text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise DataError(path, f"line {number}: expected 'Key: value', got {line[:40]!r}")
        key, value = line.split(":", 1)
        key, value = key.strip(), value.strip()
        if not key:
            raise DataError(path, f"line {number}: empty key")
        if key in values:
            if values[key] == value:
                continue  # a repeated identical line changes nothing
            raise DataError(path, f"line {number}: duplicate key {key!r} with another value")
        values[key] = value
    return values


def _as_int(path: Path, key: str, value: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"{key}: expected an integer, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise DataError(path, f"{key}: expected an integer, got {value!r}")
    return int(number)


def _as_float(path: Path, key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"{key}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(path, f"{key}: expected a finite number, got {value!r}")
    return number


def parse_cfg_text(text: str, path: str | Path = "<cfg>") -> CamusInfo:
    """Parse cfg text; ``path`` only names the source in error messages."""
    path = Path(path)
    values = _split_lines(path, text)
    missing = [k for k in REQUIRED_KEYS if k not in values]
    if missing:
        raise DataError(path, f"missing key(s) {', '.join(missing)}")
    ed = _as_int(path, "ED", values.pop("ED"))
    es = _as_int(path, "ES", values.pop("ES"))
    nb_frame = _as_int(path, "NbFrame", values.pop("NbFrame"))
    if nb_frame < 2:
        raise DataError(path, f"NbFrame must be >= 2, got {nb_frame}")
    for key, frame in (("ED", ed), ("ES", es)):
        if not 1 <= frame <= nb_frame:
            raise DataError(path, f"{key}={frame} outside 1..NbFrame={nb_frame}")
    if ed == es:
        raise DataError(path, f"ED and ES are the same frame ({ed})")

    warnings: list[str] = []

    def optional(key: str, convert):
        """An optional value; an empty or malformed one becomes None and a warning (other readers of
        CAMUS ignore such values too), never a rejected case."""
        raw = values.pop(key)
        if raw == "":
            return None
        try:
            return convert(path, key, raw)
        except DataError as e:
            warnings.append(f"{e.problem}; ignored")
            return None

    def opt_float(*keys: str) -> float | None:
        for key in keys:
            if key in values:
                return optional(key, _as_float)
        return None

    age = optional("Age", _as_int) if "Age" in values else None
    ef = opt_float("EF", "LVef")
    values.pop("LVef", None)  # both EF and LVef present: EF (the NIfTI release value) wins
    return CamusInfo(
        ed=ed,
        es=es,
        nb_frame=nb_frame,
        sex=values.pop("Sex", None) or None,
        age=age,
        image_quality=values.pop("ImageQuality", None) or None,
        ef=ef,
        frame_rate=opt_float("FrameRate"),
        edv=opt_float("LVedv"),
        esv=opt_float("LVesv"),
        extra=values,
        warnings=tuple(warnings),
    )


def parse_cfg(path: str | Path) -> CamusInfo:
    """Read and parse one ``Info_*.cfg`` file; problems raise :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")  # -sig: a leading BOM is not part of "ED"
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {type(e).__name__}") from None
    return parse_cfg_text(text, path)
