"""Where a mail's files go: the sink the steps hand raw mail and attachments to.

A step calls `mail.files.put_bytes()` or `put_chunks()` and gets the key the bytes are stored under; it
never asks where it runs. WriteNow stores each file durably before returning (a step in a worker
thread). WriteAtCommit only notes the bytes and their key (a step on the event loop, which must not wait
for the disk); the group commit (gateway/smtp/committer.py) takes them with take_unwritten() and writes
them durably before the transaction that names them commits.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from storage.files import FileStore, PendingFile, StoredFile, TooLarge


class FileSink(Protocol):
    store: FileStore

    def put_bytes(self, data: bytes | bytearray) -> StoredFile:
        """Stores data; its key is returned. The caller may change data afterwards."""

    def put_chunks(self, chunks: Iterable[bytes], limit: int) -> StoredFile:
        """Stores the chunks as one file; raises storage.files.TooLarge past limit bytes."""

    def read(self, key: str) -> bytes:
        """The bytes stored under key (also those not yet written)."""

    def take_unwritten(self) -> list[PendingFile]:
        """The files still to be written, handed over to whoever writes them now."""


class WriteNow:
    """Every file is durable in the file store before put_* returns."""

    def __init__(self, store: FileStore) -> None:
        self.store = store

    def put_bytes(self, data: bytes | bytearray) -> StoredFile:
        return self.store.put_bytes(data)

    def put_chunks(self, chunks: Iterable[bytes], limit: int) -> StoredFile:
        return self.store.put_chunks(chunks, limit=limit)

    def read(self, key: str) -> bytes:
        return self.store.read(key)

    def take_unwritten(self) -> list[PendingFile]:
        return []


class WriteAtCommit:
    """Files are kept in memory, with their keys, until take_unwritten() hands them to the group commit."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self._unwritten: list[PendingFile] = []

    def put_bytes(self, data: bytes | bytearray) -> StoredFile:
        # A copy of a mutable buffer: the caller may clear it (parse.py releases a big raw mail).
        kept = bytes(data) if isinstance(data, bytearray) else data
        return self._keep(kept)

    def put_chunks(self, chunks: Iterable[bytes], limit: int) -> StoredFile:
        data = b"".join(chunks)
        if len(data) > limit:
            raise TooLarge(f"larger than {limit} bytes")
        return self._keep(data)

    def _keep(self, data: bytes) -> StoredFile:
        pending = FileStore.pending(data)
        self._unwritten.append(pending)
        return StoredFile(pending.key, pending.size)

    def read(self, key: str) -> bytes:
        for pending in self._unwritten:
            if pending.key == key:
                return bytes(pending.data)
        return self.store.read(key)

    def take_unwritten(self) -> list[PendingFile]:
        unwritten, self._unwritten = self._unwritten, []
        return unwritten
