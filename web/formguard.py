"""Double submits: every form of the admin pages carries a one-time nonce; once a form was handled, the
same nonce sent again (a double click, a browser resubmit) goes where the first one went, with a
sentence, instead of doing the thing twice or failing."""
from __future__ import annotations

import secrets

from flask import flash, redirect, request, session
from werkzeug.wrappers import Response

KEEP = 20  # handled nonces remembered per session


def new_nonce() -> str:
    return secrets.token_urlsafe(12)


def already_done() -> Response | None:
    """The redirect to give a form sent again, or None for a new one."""
    nonce = request.form.get("form_nonce", "")
    for done_nonce, url in session.get("done_forms", []):
        if nonce and done_nonce == nonce:
            flash("That was already done; it was not done a second time.")
            return redirect(url)
    return None


def remember_done(url: str) -> Response:
    """Records the form's nonce as handled and redirects to url."""
    nonce = request.form.get("form_nonce", "")
    if nonce:
        done = [pair for pair in session.get("done_forms", []) if pair[0] != nonce][-(KEEP - 1):]
        session["done_forms"] = [*done, (nonce[:40], url)]
    return redirect(url)
