"""Step: a reply whose attachments would go over a person's or a workspace's storage quota is refused
(552 5.2.2), and the files it brought are not kept (storage/quotas.py)."""
from __future__ import annotations

from gateway.errors import OverQuota
from gateway.inbound.mail import InboundMail
from storage.quotas import quota_problem
from storage.retention import discard_files


def check_storage_quota(mail: InboundMail) -> None:
    adding = sum(a.size for a in mail.attachments)
    if not adding:
        return
    settings = mail.settings
    for target in mail.targets:
        problem = quota_problem(target.author, target.thread.workspace_id, adding, settings.person_quota_mb,
                                settings.workspace_quota_mb)
        if problem:
            drop_attachments(mail)
            raise OverQuota(detail=problem)


def drop_attachments(mail: InboundMail) -> None:
    """The files of a mail that will not be posted nor held: not written yet (the group commit writes what
    mail.files holds), never written; written, deleted (unless something else has the same bytes)."""
    keys = {a.storage_key for a in mail.attachments}
    written = [key for key in sorted(keys - {mail.raw_key or ""}) if not mail.files.forget(key)]
    discard_files(mail.settings.effective_files_dir, written)
    mail.attachments = []


__all__ = ["check_storage_quota", "drop_attachments"]
