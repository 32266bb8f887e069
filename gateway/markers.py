"""Markers our notifications carry so that a reply to them is cut exactly, whatever the mail client
does with the quote. The outbound templates write them; reply extraction cuts at them."""
from __future__ import annotations

# First line of the plain-text notification body; everything from it down is our own text.
REPLY_ABOVE_LINE = "##- Please type your reply above this line -##"

# In the HTML alternative: a hidden element with this id prefix; the suffix is a per-notification key
# (the notification's outbox id in hex), so a marker pasted by someone else's mail does not match ours.
HTML_MARKER_ID_PREFIX = "workrate-reply-above-"

# Header set on every mail we send; a mail coming back with it is our own loop and is dropped.
LOOP_HEADER = "X-WorkRate-Loop"
