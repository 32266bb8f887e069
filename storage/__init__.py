"""Storage: the peewee models, the one visibility rule and the one write path for messages."""
from storage.db import bind, database
from storage.migrations import migrate
from storage.posting import PostingError, post_message
from storage.visibility import Viewer, audience, can_see, visible_messages

__all__ = ["bind", "database", "migrate", "post_message", "PostingError", "Viewer", "audience", "can_see",
           "visible_messages"]
