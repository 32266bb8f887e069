"""A bare forward marker line ("MESSAGE TRANSFÉRÉ:", "---------- Forwarded message ---------") with nothing
under it makes no empty "Forwarded message" block: alone it is kept as the text, under a note it goes."""
from __future__ import annotations

import pytest

from gateway.inbound.extract import reply_from_parts, trim_text

MARKERS = ("MESSAGE TRANSFÉRÉ:", "---------- Forwarded message ---------", "Begin forwarded message:")


@pytest.mark.parametrize("marker", MARKERS)
def test_a_bare_marker_alone_is_kept_as_text(marker: str) -> None:
    result = trim_text(f"{marker}\n\n")
    assert result.forward is None and result.post_text == marker


@pytest.mark.parametrize("marker", MARKERS)
def test_a_bare_marker_under_a_note_makes_no_block(marker: str) -> None:
    result = trim_text(f"Please see below.\n\n{marker}\n")
    assert result.forward is None and result.post_text == "Please see below."
    html = reply_from_parts(None, f"<p>Please see below.</p><p>{marker}</p>")
    assert ":::" not in html.post_text and "Please see below." in html.post_text


def test_a_marker_with_a_message_under_it_is_still_a_block() -> None:
    result = trim_text("Note.\n\nMESSAGE TRANSFÉRÉ:\nDe: A <a@x.test>\nObjet: Devis\n\nLe devis est prêt.\n")
    assert result.forward is not None and "Le devis est prêt." in result.post_text
