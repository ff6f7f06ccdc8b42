"""Crash-atomic file writes and checked JSON reads: the only code that writes or parses store files."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from ._errors import CorruptStoreError

#: Every temporary file starts with a dot and ends with this, so a store can find its own leftovers.
TEMP_SUFFIX = ".tmp"

#: What identifies one version of a file: device, inode, size and modification time in ns.
FileKey = tuple[int, int, int, int]


def _key(status: os.stat_result) -> FileKey:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def file_key(path: Path) -> FileKey | None:
    """Return the identity of the file's current version, or None when there is no file."""
    try:
        return _key(os.stat(path))
    except FileNotFoundError:
        return None


def open_writable(path: Path, flags: int, mode: int = 0o666) -> int:
    """Open ``path`` read-write with ``flags``; on a read-only directory or filesystem, read-only.

    A store there can still be read (flock needs no write access); its writes are refused
    before they start, with a clear error.
    """
    try:
        return os.open(path, os.O_RDWR | flags, mode)
    except OSError as error:
        if not refused_as_read_only(error):
            raise
        return os.open(path, os.O_RDONLY)


def refused_as_read_only(error: OSError) -> bool:
    """Whether a write failed because the directory or filesystem is read-only to this process."""
    return isinstance(error, PermissionError) or error.errno == errno.EROFS


def encode(value: Any) -> bytes:
    """Serialize a JSON value the way every store file is written: indented UTF-8, one trailing newline."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def check_storable(value: Any) -> None:
    """Raise ValueError or TypeError unless the value can be written as strict JSON.

    orjson already refuses what is not JSON (lone surrogates, sets, objects); NaN and the
    infinities it would quietly write as null, so those are looked for here.
    """
    orjson.dumps(value)
    _check_finite(value)


def _check_finite(value: Any) -> None:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a JSON number")
    elif isinstance(value, dict):
        for item in value.values():
            _check_finite(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item)


def sync_directory(directory: Path) -> None:
    """Make the directory's entries (renames, new and removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> FileKey:
    """Replace the file's content so that a crash at any instant leaves either the old or the new file.

    :param path: the file to replace (or create)
    :param data: its new content
    :param durable: fsync the file and its directory, so the change also survives a power loss
    :returns: the identity of the version written
    """
    mtime = _next_mtime(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.utime(fd, ns=(mtime, mtime))
            if durable:
                os.fsync(fd)
            key = _key(os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        sync_directory(path.parent)
    return key


def _next_mtime(path: Path, current: FileKey | None = None) -> int:
    if current is not None:
        previous = current[3]
    else:
        try:
            previous = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            previous = 0
    # Readers keep a parsed file while (inode, size, mtime) is unchanged. Inodes are reused and the
    # kernel's file clock is coarse, so two writes could look alike: keep each path's mtime rising.
    return max(time.time_ns(), previous + 1)


def _renameat2() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths' files in one atomic step; False where the system or filesystem cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(code, os.strerror(code), str(second))


def prepare_spare(path: Path, data: bytes, spare: Path, current: FileKey | None = None) -> FileKey:
    """Write a file's next content into its spare, ready for :func:`swap_in`; nothing is synced.

    The spare is a file kept beside the store for this: reusing it spares the filesystem creating
    and freeing an inode per write, several times the cost of the write itself. A crash while it
    is written leaves only the spare torn.

    :param current: the identity of the file now, when the caller knows it (None: no file, or unknown)
    :returns: the identity the file will have once swapped in
    """
    mtime = _next_mtime(path, current)
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o666)
    if os.fstat(fd).st_nlink > 1:
        # The old version of a file that a checkpoint linked into its base: that copy must stay
        # as it is, so the spare starts anew on a fresh inode.
        os.close(fd)
        os.unlink(spare)
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        offset = 0
        view = memoryview(data)
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(data))
        os.utime(fd, ns=(mtime, mtime))
        return _key(os.fstat(fd))
    except OSError as error:
        error.filename = error.filename or str(spare)
        raise
    finally:
        os.close(fd)


def swap_in(spare: Path, path: Path) -> None:
    """Make the prepared spare the file in one atomic step: a reader sees the old file or the new one.

    The old version becomes the spare, to be written over next time.
    """
    if not _exchange(spare, path):
        os.replace(spare, path)


def read_json(path: Path) -> tuple[Any, FileKey] | None:
    """Parse a store file.

    :param path: the file to read
    :returns: the value and the identity of the version read, or None when there is no file
    :raises CorruptStoreError: when the file is not UTF-8 JSON, naming the file and the position
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        key = _key(os.fstat(fd))
        with open(fd, "rb", closefd=False) as stream:
            data = stream.read()
    finally:
        os.close(fd)
    try:
        return orjson.loads(data), key
    except orjson.JSONDecodeError:
        pass
    # orjson is fast but says little about where; the standard parser names the line and column.
    try:
        json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CorruptStoreError(str(path), f"not UTF-8 at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise CorruptStoreError(str(path), f"not valid JSON: {error.msg}", error.lineno, error.colno) from None
    raise CorruptStoreError(str(path), "not valid JSON")


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete the temporary files a killed writer left behind; call only while holding the store lock.

    :returns: the files removed
    """
    removed = []
    for leftover in directory.glob(f".*{TEMP_SUFFIX}"):
        with suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    return removed
