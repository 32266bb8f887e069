"""Where a trimmed part starts quoting one of our own emails. What lies below is never restored into a
message: a quoted notification carries the recipient's reply address, sign-in and unsubscribe links, and
(for a team member) context that may be internal."""
from __future__ import annotations

import re

from gateway.markers import REPLY_ABOVE_LINE

_QUOTE_PREFIX = re.compile(r"^[\s>|]*")
_ADDRESS_START = re.compile(r"[<\[]?[\w.+-]+@")  # a line that starts inside an address was wrapped there


def restorable_part(trimmed: str, *, reply_domain: str, base_url: str) -> str:
    """The part of `trimmed` above the first line that quotes our own email (our marker, an address at our
    reply domain, or a link to this product) and the attribution line it may be wrapped from, with trailing
    blank lines dropped."""
    signs = [REPLY_ABOVE_LINE.lower(), "@" + reply_domain.lower()]
    if base_url:
        signs.append(base_url.lower().rstrip("/").split("://", 1)[-1])
    lines = trimmed.splitlines()
    for i, line in enumerate(lines):
        bare = _QUOTE_PREFIX.sub("", line).lower()
        if any(sign in bare for sign in signs):
            start = i
            while start > 0 and i - start < 2 and _wrapped(lines[start - 1], lines[start]):
                start -= 1
            return "\n".join(lines[:start]).rstrip()
    return trimmed.rstrip()


def _wrapped(previous: str, line: str) -> bool:
    """Whether `line` continues `previous`, as a mail client wraps a long attribution line ("On …, WorkRate <"
    then "reply+…@… > wrote:"); a signature above the quote is the writer's own and stays."""
    previous, line = _QUOTE_PREFIX.sub("", previous).rstrip(), _QUOTE_PREFIX.sub("", line)
    return bool(previous) and (previous.endswith(("<", ",", '"')) or bool(_ADDRESS_START.match(line)))
