"""Full-text search over one thread or every thread a viewer may open, through the visibility rule
(SQLite FTS5 or PostgreSQL full text)."""
from __future__ import annotations

import re

from peewee import SQL, ModelSelect

from storage.db import is_sqlite
from storage.models import Message, Thread
from storage.visibility import Viewer, visible_messages, visible_messages_anywhere

WORD_RE = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 12


def search_terms(query: str) -> list[str]:
    """The words of a query, as searched and highlighted (punctuation and operators are ignored)."""
    return WORD_RE.findall(query or "")[:MAX_TERMS]


def search_messages(viewer: Viewer, thread: Thread | int, query: str) -> ModelSelect[Message]:
    """Messages of the thread that viewer may see and that contain every word of query, newest first."""
    return _matching(visible_messages(viewer, thread), query)


def search_everywhere(viewer: Viewer, query: str) -> ModelSelect[Message]:
    """Messages of every workspace viewer may open, that viewer may see and that contain every word of
    query, newest first."""
    return _matching(visible_messages_anywhere(viewer), query)


def _matching(base: ModelSelect[Message], query: str) -> ModelSelect[Message]:
    terms = search_terms(query)
    if not terms:
        return base.where(SQL("1 = 0"))
    if is_sqlite():
        # Each word a quoted FTS5 string with prefix match: user input never becomes FTS syntax.
        fts_query = " ".join('"' + t.replace('"', "") + '"*' for t in terms)
        matching = SQL("(SELECT rowid FROM message_fts WHERE message_fts MATCH ?)", (fts_query,))
        return base.where(Message.id.in_(matching)).order_by(Message.id.desc())
    ts_query = " & ".join(t.replace("'", "") + ":*" for t in terms)
    return (base.where(SQL("search_tsv @@ to_tsquery('simple', %s)", (ts_query,)))
            .order_by(Message.id.desc()))
