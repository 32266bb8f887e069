"""Reading the forms of the web app, with the sentences people see when something is wrong.

The composer is parsed by hand (CSRF comes from CSRFProtect for every form): its attachments are
streamed into the content-addressed file store with a size limit, never kept whole in memory.
"""
from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field

from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Request

from config import Settings
from storage.files import FileStore, TooLarge, safe_filename
from storage.posting import MAX_TEXT_LENGTH, NewAttachment
from storage.units import human_size

MAX_ATTACHMENTS = 20
CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class FormError(ValueError):
    """What is wrong with the form, as one sentence for the person who sent it."""


def megabytes(size: int) -> str:
    return human_size(size)


def too_large_sentence(settings: Settings) -> str:
    return (f"The attachments are too large: a message can carry at most {megabytes(settings.max_message_size)} "
            "of files in all. Your text was not sent; please go back, remove a file and send again.")


@dataclass
class Composer:
    """A filled-in composer: the text as typed (kept on error), the Internal toggle and the files."""

    text: str = ""
    internal: bool = False
    attachments: list[NewAttachment] = field(default_factory=list)


def content_type_for(upload: FileStorage, name: str) -> str:
    """The type we store and serve: guessed from the safe name, else the browser's if well-formed."""
    guessed = mimetypes.guess_type(name)[0]
    if guessed:
        return guessed
    given = (upload.mimetype or "").lower()
    if CONTENT_TYPE_RE.match(given):
        return given
    return "application/octet-stream"


def read_composer(request: Request, settings: Settings, *, allow_internal: bool) -> Composer:
    """Parses the composer form and stores its files; raises FormError (the typed text is in .composer)."""
    text = request.form.get("text", "")
    composer = Composer(text=text, internal=allow_internal and request.form.get("internal") in ("1", "on", "true"))
    if len(text) > MAX_TEXT_LENGTH:
        raise ComposerError(composer, f"A message can hold at most {MAX_TEXT_LENGTH:,} characters; "
                                      f"this one has {len(text):,}.")
    uploads = [f for f in request.files.getlist("attachments") if f and f.filename]
    if len(uploads) > MAX_ATTACHMENTS:
        raise ComposerError(composer, f"A message can carry at most {MAX_ATTACHMENTS} attachments.")
    store = FileStore(settings.effective_files_dir)
    remaining = settings.max_message_size
    for upload in uploads:
        name = safe_filename(upload.filename)
        try:
            stored = store.put_stream(upload.stream, limit=remaining)
        except TooLarge:
            raise ComposerError(composer, f"The attachments are too large: a message can carry at most "
                                          f"{megabytes(settings.max_message_size)} of files in all "
                                          f"({name} went over).") from None
        remaining -= stored.size
        composer.attachments.append(NewAttachment(name=name, content_type=content_type_for(upload, name),
                                                  size=stored.size, sha256=stored.sha256, storage_key=stored.key))
    if not text.strip() and not composer.attachments:
        raise ComposerError(composer, "Please write a message or attach a file before sending.")
    return composer


class ComposerError(FormError):
    def __init__(self, composer: Composer, sentence: str) -> None:
        super().__init__(sentence)
        self.composer = composer
