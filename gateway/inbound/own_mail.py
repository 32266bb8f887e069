"""Where a trimmed part starts quoting one of our own emails. What lies below is never restored into a
message: a quoted notification carries the recipient's reply address, sign-in and unsubscribe links, and
(for a team member) context that may be internal."""
from __future__ import annotations

import re

from gateway.markers import REPLY_ABOVE_LINE

_QUOTE_PREFIX = re.compile(r"^[\s>|]*")


def restorable_part(trimmed: str, *, reply_domain: str, base_url: str) -> str:
    """The part of `trimmed` above the first paragraph that quotes our own email (our marker, an address at
    our reply domain, or a link to this product), with trailing blank lines dropped."""
    signs = [REPLY_ABOVE_LINE.lower(), "@" + reply_domain.lower()]
    if base_url:
        signs.append(base_url.lower().rstrip("/").split("://", 1)[-1])
    lines = trimmed.splitlines()
    for i, line in enumerate(lines):
        bare = _QUOTE_PREFIX.sub("", line).lower()
        if any(sign in bare for sign in signs):
            start = i
            while start > 0 and lines[start - 1].strip():  # its paragraph: a wrapped attribution line
                start -= 1
            return "\n".join(lines[:start]).rstrip()
    return trimmed.rstrip()
