"""The store's folders, held by descriptor: no symbolic link inside a store is ever followed.

Every file jobstore opens, creates, renames, links or removes inside a store is named relative to
a descriptor of its folder and opened with ``O_NOFOLLOW``; every folder below the root is opened
the same way. So a link planted in a store, or a folder swapped for one mid-operation, cannot
send a read or a write outside it. The root is opened as named, links included: a ``jobs ->
/data/jobs`` link is its owner's choice, made outside the store.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

from ._errors import CorruptStoreError, UnsafeStoreError

_NO_LINKS = os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | _NO_LINKS


class Identity(NamedTuple):
    """Which file a name holds, and how long it is, learnt without asking its times."""

    ino: int
    size: int


# statx(2) (linux/stat.h): the inode number and size asked for, and where they are in its 256 bytes.
_STATX_WANTED = 0x100 | 0x200
_STATX_FIELDS = struct.Struct("=I28xQQ")  # stx_mask at 0, stx_ino at 32, stx_size at 40
_AT_SYMLINK_NOFOLLOW = 0x100


def _load_statx() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):  # a C library older than glibc 2.28
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
    function.restype = ctypes.c_int
    return function


_statx = _load_statx()


class Folder:
    """An open folder of the store; every name given to its methods is a plain name within it.

    :param fd: a descriptor of the folder, owned by this object
    :param path: the folder's path, for messages; or ``within`` and ``name``, which make it
        only when a message needs it (the store's folders are opened for every operation)
    """

    def __init__(self, fd: int, path: Path | None = None, *, within: Folder | None = None, name: str = "") -> None:
        self.fd = fd
        self._path = path
        self._within = within
        self._name = name

    @property
    def path(self) -> Path:
        if self._path is None:
            assert self._within is not None
            self._path = self._within.path / self._name
        return self._path

    @classmethod
    def root(cls, path: Path, *, create: bool = False) -> Folder:
        """Open the store's root folder, following links to it (and creating it when asked)."""
        try:
            return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)
        except FileNotFoundError:
            if not create:
                raise
        path.mkdir(parents=True, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    def child(self, name: str, *, create: bool = False) -> Folder:
        """Open a folder within this one, never through a link.

        :param create: make the folder first when it is missing
        :raises UnsafeStoreError: when the name is a symbolic link
        :raises CorruptStoreError: when the name is a file, not a folder
        """
        try:
            return self._open_child(name)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, 0o777, dir_fd=self.fd)
        except FileExistsError:
            pass  # made meanwhile by another process
        except OSError as error:
            error.filename = str(self.path / name)
            raise
        return self._open_child(name)

    def _open_child(self, name: str) -> Folder:
        try:
            return Folder(os.open(name, _FOLDER, dir_fd=self.fd), within=self, name=name)
        except OSError as error:
            refusal = self._refusal(name, error)
            if refusal is error and error.errno == errno.ENOTDIR:
                raise CorruptStoreError(str(self.path / name), "a file where jobstore keeps a folder") from None
            raise refusal from None

    def open(self, name: str, flags: int, mode: int = 0o666) -> int:
        """Open a file in this folder, never through a link; a file opened for writing must have no other links.

        Files written in place (the log, its note, the spares) would otherwise write through a
        hard link into a file elsewhere; files replaced by renaming are not opened for writing.

        :raises UnsafeStoreError: when the name is a symbolic link, or a hard link opened for writing
        """
        try:
            fd = os.open(name, flags | _NO_LINKS, mode, dir_fd=self.fd)
        except OSError as error:
            raise self._refusal(name, error) from None
        if flags & (os.O_WRONLY | os.O_RDWR) and not flags & os.O_EXCL and os.fstat(fd).st_nlink > 1:
            os.close(fd)
            raise UnsafeStoreError(str(self.path / name), "it has other hard links, so writing it could change a file elsewhere")
        return fd

    def open_writable(self, name: str, flags: int) -> int:
        """Open a file read-write; on a read-only folder or filesystem, read-only.

        A store there can still be read (flock needs no write access); its writes are refused
        before they start, with a clear error.
        """
        try:
            return self.open(name, os.O_RDWR | flags)
        except OSError as error:
            if not refused_as_read_only(error):
                raise
            return self.open(name, os.O_RDONLY)

    def stat(self, name: str) -> os.stat_result | None:
        """The status of the entry itself (a link is not followed), or None when there is none."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def identity(self, name: str) -> Identity | None:
        """What the entry is (a link is not followed), or None when there is none; its times are not asked.

        Asking a file's times makes Linux (6.13 on) give its next write a fine-grained time, so
        that the inode changes with every write and each sync of the file also commits the
        filesystem's journal. The log is looked at before every write: statx(2) without the times
        keeps its syncs to the data alone.
        """
        global _statx
        if _statx is not None:
            buffer = ctypes.create_string_buffer(256)
            if _statx(self.fd, os.fsencode(name), _AT_SYMLINK_NOFOLLOW, _STATX_WANTED, buffer) == 0:
                mask, ino, size = _STATX_FIELDS.unpack_from(buffer.raw)
                if mask & _STATX_WANTED == _STATX_WANTED:
                    return Identity(ino, size)
            else:
                number = ctypes.get_errno()
                if number == errno.ENOENT:
                    return None
                if number not in (errno.ENOSYS, errno.EPERM):  # a kernel or sandbox without it: stat serves
                    raise OSError(number, os.strerror(number), str(self.path / name))
                _statx = None
        status = self.stat(name)
        return None if status is None else Identity(status.st_ino, status.st_size)

    def names(self) -> list[str]:
        """The names of the folder's entries."""
        return os.listdir(self.fd)

    def links(self) -> list[str]:
        """The names of the folder's entries that are symbolic links."""
        found = []
        for name in self.names():
            status = self.stat(name)
            if status is not None and stat.S_ISLNK(status.st_mode):
                found.append(name)
        return found

    def remove(self, name: str) -> None:
        """Remove a file (or a link, never what it points to); a missing one is fine."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def remove_folder(self, name: str) -> None:
        """Remove a folder of files within this one, as far as possible; a link in its place goes, never what it points to."""
        status = self.stat(name)
        if status is None:
            return
        if not stat.S_ISDIR(status.st_mode):
            self.remove(name)
            return
        try:
            with self.child(name) as folder:
                for entry in folder.names():
                    try:
                        folder.remove(entry)
                    except OSError:
                        pass  # a folder someone put inside: the removal below then fails, harmlessly
            os.rmdir(name, dir_fd=self.fd)
        except OSError:
            pass

    def replace(self, name: str, target: Folder, target_name: str) -> None:
        """Rename a file of this folder over ``target_name`` in ``target`` (a link there is replaced, not followed)."""
        os.replace(name, target_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)

    def link(self, name: str, target: Folder, target_name: str) -> None:
        """Make ``target_name`` in ``target`` another name of this folder's file (of a link itself, never its target)."""
        os.link(name, target_name, src_dir_fd=self.fd, dst_dir_fd=target.fd, follow_symlinks=False)

    def sync(self) -> None:
        """Make the folder's entries (renames, new and removed files) durable."""
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _refusal(self, name: str, error: OSError) -> OSError | UnsafeStoreError:
        """The error to raise for a failed open: a link's own, or the system's naming the path."""
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            status = self.stat(name)
            if status is not None and stat.S_ISLNK(status.st_mode):
                return UnsafeStoreError(str(self.path / name), "it is a symbolic link")
        error.filename = str(self.path / name)
        return error


def refused_as_read_only(error: OSError) -> bool:
    """Whether a write failed because the directory or filesystem is read-only to this process."""
    return isinstance(error, PermissionError) or error.errno == errno.EROFS
