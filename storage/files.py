"""Attachment bytes and raw mail on disk, content-addressed by SHA-256, outside the database, written so
that a row naming a key always finds complete bytes (the argument is in FileStore's docstring).
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

CHUNK = 1024 * 1024
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
# Stored files and their folders are this user's only: attachments and raw mail are private.
FILE_MODE = 0o600
DIR_MODE = 0o700
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_sync_data = getattr(os, "fdatasync", os.fsync)

# Directories (as strings) known to exist with a durable entry in their parent; see FileStore, step 4.
_durable_dirs: set[str] = set()
_dirs_lock = threading.Lock()


class TooLarge(ValueError):
    """The stream was longer than the limit it was stored with."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int

    @property
    def sha256(self) -> str:
        return self.key


@dataclass(frozen=True)
class PendingFile:
    """Bytes whose key is known and that are still to be written (FileStore.put_pending)."""

    key: str
    data: bytes | bytearray | memoryview

    @property
    def size(self) -> int:
        return len(self.data)


class FileStore:
    """The store under one root folder.

    Files live at ROOT/ab/KEY, ab being the key's first two hex digits: 256 directories, each created once.
    (Files stored earlier under ROOT/ab/cd/KEY are still found. Two levels meant 65,536 directories, so for
    most files of a young store a new directory, and an fsync of its parent, on top of the file itself.)

    Client file names are never used as paths. A row that names a key must always find complete bytes, even
    after a crash or power loss, because the gateway answers 250 once the row commits. The argument:

    1. The bytes go to a temporary name, are written in full and fdatasync()ed: fdatasync flushes the data
       and the metadata needed to read it back (size, block map), which is all a new file has.
    2. rename() gives the complete file its content-addressed name atomically: the name never points at a
       partial file, whatever moment a crash comes.
    3. The directory holding the new name is fsync()ed, since a new directory entry is durable only once its
       directory is. Only then does put_*() return, and only then can the caller commit a row naming the key.
    4. A directory that did not exist is created and its parent fsync()ed (up to the root), once per process:
       directories are never removed, so a directory seen durable stays so, and later files need only step 3.
    5. When the final name already exists, the same bytes are already there (same SHA-256), written by steps
       1-3 before: nothing is written.

    put_bytes() knows the key before writing (the bytes are in memory), so its temporary file lives in the
    final directory and one directory fsync covers the whole write. Streams are hashed as they are written,
    so their temporary file lives in the root and is renamed across; the root's own entry for it does not
    need to be durable (a temporary file left by a crash is only garbage, named ".incoming-*").
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._root = os.fspath(self.root)

    def path(self, key: str) -> Path:
        """Where the key's bytes are: ROOT/ab/KEY (ab: the key's first two hex digits), or ROOT/ab/cd/KEY
        for files stored before the layout was flattened."""
        if not KEY_RE.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        path = self.root / key[:2] / key
        if not path.exists():
            old = self.root / key[:2] / key[2:4] / key
            if old.exists():
                return old
        return path

    def _stored(self, directory: str, key: str) -> bool:
        """Whether key's bytes are already there; if so, their time is set to now, so that a sweep removing
        the files of deleted messages (storage/file_removals.py) leaves them to the row about to name them."""
        for path in (f"{directory}/{key}", f"{directory}/{key[2:4]}/{key}"):
            try:
                os.utime(path)
                return True
            except FileNotFoundError:
                continue
        return False

    def put_stream(self, stream: IO[bytes], limit: int | None = None) -> StoredFile:
        return self.put_chunks(iter(lambda: stream.read(CHUNK), b""), limit)

    def put_bytes(self, data: bytes | bytearray | memoryview) -> StoredFile:
        return self._put_known(hashlib.sha256(data).hexdigest(), data)

    @staticmethod
    def pending(data: bytes | bytearray | memoryview) -> PendingFile:
        """The key data will have, without writing anything yet (see put_pending)."""
        return PendingFile(hashlib.sha256(data).hexdigest(), data)

    def put_pending(self, files: Iterable[PendingFile]) -> None:
        """Writes files made by pending(), each durably (the same steps as put_bytes), once per key."""
        done: set[str] = set()
        for file in files:
            if file.key not in done:
                self._put_known(file.key, file.data)
                done.add(file.key)

    def _put_known(self, key: str, data: bytes | bytearray | memoryview) -> StoredFile:
        directory = self._directory(key)
        final = f"{directory}/{key}"
        if self._stored(directory, key):
            # Another thread or process may have just renamed it there and not fsynced the folder yet.
            _fsync_dir(directory)
        else:
            tmp = f"{directory}/.incoming-{secrets.token_hex(8)}"
            fd = os.open(tmp, _OPEN_NEW, FILE_MODE)
            try:
                try:
                    _write_all(fd, data)
                    _sync_data(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            _fsync_dir(directory)
        return StoredFile(key=key, size=len(data))

    def put_chunks(self, chunks: Iterable[bytes], limit: int | None = None) -> StoredFile:
        _ensure_dir(self._root)
        digest = hashlib.sha256()
        size = 0
        tmp = f"{self._root}/.incoming-{secrets.token_hex(8)}"
        fd = os.open(tmp, _OPEN_NEW, FILE_MODE)
        try:
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise TooLarge(f"larger than {limit} bytes")
                    digest.update(chunk)
                    _write_all(fd, chunk)
                _sync_data(fd)
            finally:
                os.close(fd)
            key = digest.hexdigest()
            directory = self._directory(key)
            final = f"{directory}/{key}"
            if self._stored(directory, key):
                os.unlink(tmp)
                _fsync_dir(directory)  # as in _put_known: its name may not be durable yet
            else:
                os.replace(tmp, final)
                _fsync_dir(directory)
            return StoredFile(key=key, size=size)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _directory(self, key: str) -> str:
        """The key's directory (as a string), created durably if needed."""
        if not KEY_RE.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        directory = f"{self._root}/{key[:2]}"
        if directory not in _durable_dirs:
            _ensure_dir(directory)
        return directory

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def remove(self, key: str) -> bool:
        """Deletes the file stored under key; False when there was none. The caller makes sure nothing
        refers to it any more (the store is content-addressed: the same bytes are stored once)."""
        try:
            os.unlink(self.path(key))
            return True
        except FileNotFoundError:
            return False


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _ensure_dir(directory: str) -> None:
    """Creates directory and its missing parents, fsyncing each new entry's parent (step 4)."""
    if directory in _durable_dirs:
        return
    with _dirs_lock:
        missing: list[str] = []
        path = directory
        while path and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for new in reversed(missing):
            try:
                os.mkdir(new, DIR_MODE)
            except FileExistsError:
                pass
            _fsync_dir(os.path.dirname(new) or ".")
        if not missing:
            # Seen for the first time in this process: make sure its entry is durable, whoever made it.
            _fsync_dir(os.path.dirname(directory) or ".")
        _durable_dirs.add(directory)


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safe_filename(name: str | None, default: str = "attachment") -> str:
    """A display and download name that is never a path and never empty: no directories, control or
    format characters, NUL, leading dots or reserved characters, at most 150 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    # Unicode format characters (Cf: right-to-left override, zero-width joiners…) can make "invoice\u202egnp.exe"
    # display as "invoiceexe.png": they are dropped.
    name = "".join(c for c in name if unicodedata.category(c) != "Cf")
    name = _UNSAFE.sub("_", name).strip(" ._")
    if not name:
        return default
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140] + "." + ext[:9]) if dot and len(ext) < 10 else name[:150]
    return name
