"""Crash-atomic file writes and checked JSON reads: the only code that writes or parses store files."""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import suppress
from typing import Any

import orjson

from ._errors import CorruptStoreError
from ._folder import Folder

#: Every temporary file starts with a dot and ends with this, so a store can find its own leftovers.
TEMP_SUFFIX = ".tmp"

#: What identifies one version of a file: device, inode, size and modification time in ns.
FileKey = tuple[int, int, int, int]


def _key(status: os.stat_result) -> FileKey:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def file_key(folder: Folder, name: str) -> FileKey | None:
    """Return the identity of the file's current version, or None when there is no file."""
    status = folder.stat(name)
    return None if status is None else _key(status)


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


def write_atomic(folder: Folder, name: str, data: bytes, *, durable: bool = True, current: FileKey | None = None) -> FileKey:
    """Replace the file's content so that a crash at any instant leaves either the old or the new file.

    The new version is a new file renamed over the old, so the old one's content is gone with
    it: no copy of an old version stays anywhere.

    :param folder: the folder of the file
    :param name: the file to replace (or create)
    :param data: its new content
    :param durable: fsync the file and its folder, so the change also survives a power loss
    :param current: the identity of the file now, when the caller knows it (None: look it up)
    :returns: the identity of the version written
    """
    mtime = _next_mtime(folder, name, current)
    temp = f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd = folder.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
        folder.replace(temp, folder, name)
    except BaseException as error:
        with suppress(OSError):
            folder.remove(temp)
        if isinstance(error, OSError):
            error.filename = error.filename or str(folder.path / name)
        raise
    if durable:
        folder.sync()
    return key


def _next_mtime(folder: Folder, name: str, current: FileKey | None = None) -> int:
    if current is not None:
        previous = current[3]
    else:
        status = folder.stat(name)
        previous = 0 if status is None else status.st_mtime_ns
    # Readers keep a parsed file while (inode, size, mtime) is unchanged. Inodes are reused and the
    # kernel's file clock is coarse, so two writes could look alike: keep each path's mtime rising.
    return max(time.time_ns(), previous + 1)


def read_json(folder: Folder, name: str) -> tuple[Any, FileKey] | None:
    """Parse a store file.

    :param folder: the folder of the file
    :param name: the file to read
    :returns: the value and the identity of the version read, or None when there is no file
    :raises CorruptStoreError: when the file is not UTF-8 JSON, naming the file and the position
    :raises UnsafeStoreError: when the file is a symbolic link
    """
    path = folder.path / name
    try:
        fd = folder.open(name, os.O_RDONLY)
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


def remove_temporary_files(folder: Folder) -> list[str]:
    """Delete the temporary files a killed writer left behind; call only while holding the store lock.

    :returns: the names of the files removed
    """
    removed = []
    for name in folder.names():
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            folder.remove(name)
            removed.append(name)
    return removed
