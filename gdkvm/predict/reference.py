"""The reference EF of an input, when its dataset's labels sit next to it: EchoNet FileList.csv
(beside the file or its Videos/ folder) or a CAMUS Info_<view>.cfg."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from gdkvm.errors import DataError
from gdkvm.predict.inputs import NIFTI_SUFFIXES, _camus_info, recording_name


@lru_cache(maxsize=8)
def _filelist_efs(path: str, mtime: float) -> dict[str, float]:
    from gdkvm.data.echonet import read_filelist

    entries, _ = read_filelist(path)
    return {name: e.ef for name, e in entries.items()}


def reference_ef(path: Path) -> tuple[float, Path] | None:
    """(EF in %, the file it came from) for ``path``, or None when no label file lists it.

    A label file that cannot be read gives None too: the reference is a courtesy, never required.
    """
    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        info = _camus_info(path)
        if info is None or info.ef is None:
            return None
        view = "2CH" if "_2CH_" in path.name else "4CH"
        return float(info.ef), path.parent / f"Info_{view}.cfg"
    for folder in (path.parent, path.parent.parent):
        filelist = folder / "FileList.csv"
        if filelist.is_file():
            try:
                efs = _filelist_efs(str(filelist), filelist.stat().st_mtime)
            except DataError:
                return None
            ef = efs.get(recording_name(path))
            return (ef, filelist) if ef is not None else None
    return None
