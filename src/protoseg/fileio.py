"""Safe file handling shared by every command: atomic outputs and checked HDF5 inputs."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from protoseg.errors import InputError

__all__ = ["atomic_output", "write_json", "atomic_folder", "check_readable", "hdf5_format", "open_h5_checked", "closed_if_corrupt"]


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    On any exception the temporary file is removed, so no half-written output is ever left behind.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError("output folder does not exist", parent)
    if path.is_dir():
        raise InputError("output path is a folder, expected a file name", path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give the output the permissions of any new file.
        umask = os.umask(0)
        os.umask(umask)
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json(path: str | Path, data) -> None:
    """``data`` as indented JSON at ``path``, written atomically (a result file is whole or absent)."""
    import json

    with atomic_output(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; its files appear in ``path`` only if the block succeeds.

    A new ``path`` is the renamed temporary folder; an existing one gets the files moved in one by
    one (each file replaced atomically, other files left as they are). On any exception the
    temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("output path is a file, expected a folder", path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private (0700)
        if not path.exists():
            os.replace(tmp, path)
        else:
            for item in sorted(tmp.iterdir()):
                os.replace(item, path / item.name)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_readable(path: str | Path) -> Path:
    """Raise InputError unless ``path`` is an existing, readable, non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected a file", path)
    if not os.access(path, os.R_OK):
        raise InputError("file is not readable (permissions)", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    return path


def open_h5_checked(path: str | Path, expected_format: str, supported_versions: tuple[int, ...] = (1,)):
    """Open an HDF5 file for reading and check its ``format`` / ``version`` attributes.

    Returns an open ``h5py.File``; the caller closes it. Missing, truncated or foreign files raise
    InputError with one line naming the file.
    """
    import h5py

    path = check_readable(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        with open(path, "rb") as raw:
            signature = raw.read(8)
        if signature == b"\x89HDF\r\n\x1a\n":
            raise InputError(f"HDF5 file is truncated or corrupt ({exc.__class__.__name__})", path) from None
        raise InputError(f"not an HDF5 file (expected a {expected_format} file)", path) from None
    try:
        found = handle.attrs.get("format")
        if isinstance(found, bytes):
            found = found.decode()
        version = int(handle.attrs.get("version", -1))
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        handle.close()
        raise InputError(f"HDF5 file is corrupt: its attributes cannot be read ({exc.__class__.__name__})", path) from None
    if found != expected_format:
        handle.close()
        what = f"a '{found}' file" if found else "an HDF5 file without a protoseg format attribute"
        raise InputError(f"is {what}, expected a '{expected_format}' file", path)
    if version not in supported_versions:
        handle.close()
        raise InputError(
            f"{expected_format} version {version} is not supported (this protoseg reads {list(supported_versions)})",
            path,
        )
    return handle


# What reading a protoseg file's index raises when the file is incomplete or corrupt, besides InputError.
CORRUPT_READ_ERRORS = (KeyError, OSError, ValueError, TypeError, IndexError, AttributeError, RuntimeError)


@contextlib.contextmanager
def closed_if_corrupt(handle, path: str | Path, what: str) -> Iterator[None]:
    """Around the first reads of an opened file: on failure close ``handle`` and raise one InputError line.

    ``what`` names the file kind ("events file", "image file"); InputErrors pass through unchanged.
    """
    try:
        yield
    except InputError:
        handle.close()
        raise
    except CORRUPT_READ_ERRORS as exc:
        handle.close()
        raise InputError(f"{what} is incomplete or corrupt ({exc.__class__.__name__}: {exc})", path) from None


def hdf5_format(path: str | Path) -> str:
    """The ``format`` attribute of an HDF5 file ("protoseg-events", "protoseg-images", ...); InputError if unreadable."""
    import h5py

    path = Path(path)
    check_readable(path)
    try:
        with h5py.File(path, "r") as handle:
            found = handle.attrs.get("format")
            return found.decode() if isinstance(found, bytes) else str(found)
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError):
        raise InputError("not a readable HDF5 file (expected protoseg events or images; truncated or corrupt?)", path) from None
