"""Crash-atomic file writes and checked JSON reads: the only code that writes or parses store files."""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

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


def encode(value: Any) -> bytes:
    """Serialize a JSON value the way every store file is written: indented UTF-8, one trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


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
    try:
        previous = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        previous = 0
    # Readers keep a parsed file while (inode, size, mtime) is unchanged. Inodes are reused and the
    # kernel's file clock is coarse, so two writes could look alike: keep each path's mtime rising.
    mtime = max(time.time_ns(), previous + 1)
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
        return json.loads(data.decode("utf-8")), key
    except UnicodeDecodeError as error:
        raise CorruptStoreError(str(path), f"not UTF-8 at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise CorruptStoreError(str(path), f"not valid JSON: {error.msg}", error.lineno, error.colno) from None


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
