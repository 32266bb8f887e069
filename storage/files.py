"""Attachment bytes and raw mail on disk, content-addressed by SHA-256, outside the database.

Bytes are streamed in through a temporary file, fsynced, then renamed into place, so a row that
names a key always finds complete bytes. Client file names are never used as paths.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
KEY_RE = re.compile(r"^[0-9a-f]{64}$")


class TooLarge(ValueError):
    """The stream was longer than the limit it was stored with."""


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int

    @property
    def sha256(self) -> str:
        return self.key


class FileStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not KEY_RE.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    def put_stream(self, stream: BinaryIO, limit: int | None = None) -> StoredFile:
        return self.put_chunks(iter(lambda: stream.read(CHUNK), b""), limit)

    def put_bytes(self, data: bytes) -> StoredFile:
        return self.put_chunks([data])

    def put_chunks(self, chunks: Iterable[bytes], limit: int | None = None) -> StoredFile:
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise TooLarge(f"larger than {limit} bytes")
                    digest.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            key = digest.hexdigest()
            final = self.path(key)
            if final.exists():
                os.unlink(tmp)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                _fsync_dir(final.parent)
            return StoredFile(key=key, size=size)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def exists(self, key: str) -> bool:
        return self.path(key).exists()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safe_filename(name: str | None, default: str = "attachment") -> str:
    """A display and download name that is never a path and never empty: no directories, control
    characters, NUL, leading dots or reserved characters, at most 150 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = _UNSAFE.sub("_", name).strip(" ._")
    if not name:
        return default
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 140] + "." + ext[:9]) if dot and len(ext) < 10 else name[:150]
    return name
