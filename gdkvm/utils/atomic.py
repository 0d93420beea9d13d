"""Atomic writes: a file or a folder appears complete or not at all.

Every writer in gdkvm that produces a user-visible file goes through these helpers, so a crash or a
bad input never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: errno values that mean "this place cannot be written" (not a bug): reported naming the target.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``);
    elsewhere by the set-and-restore ``os.umask`` round trip."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plainly created file gets under the current umask (0o666 & ~umask, e.g. 0o644)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode a plainly created folder gets under the current umask (0o777 & ~umask, e.g. 0o755)."""
    return 0o777 & ~current_umask()


def _write_error(target: Path, e: OSError) -> Exception:
    from gdkvm.errors import DataError

    return DataError(target, f"cannot write: {e.strerror or e} (errno {e.errno})")


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same folder (same filesystem), so the final ``os.replace`` is
    atomic. On an exception the temporary file is removed and ``target`` is left untouched. A full
    disk, a read-only or forbidden place becomes a one-line DataError naming ``target``. ``mkstemp``
    makes the file private (0600); before the rename it gets the umask's usual mode (:func:`file_mode`).
    """
    target = Path(target)
    sfx = suffix if suffix is not None else "".join(target.suffixes)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise _write_error(target, e) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, target)
    except OSError as e:
        if e.errno in _WRITE_ERRNOS:
            raise _write_error(target, e) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``target`` atomically."""
    atomic_write_bytes(target, text.encode(encoding))


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; it replaces ``target`` only on success.

    An existing ``target`` is swapped out and removed after the new folder is in place. ``mkdtemp``
    makes the folder private (0700); before the rename it gets the umask's usual mode (:func:`dir_mode`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_dir_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, dir_mode())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            old.rmdir()
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_dir_temporaries(target: str | Path) -> list[Path]:
    """Remove ``.<name>.*.tmp`` / ``.old`` folders next to ``target`` left by a killed :func:`atomic_dir`."""
    target = Path(target)
    stale = [p for p in target.parent.glob(f".{target.name}.*") if p.is_dir() and p.suffix in (".tmp", ".old")]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
