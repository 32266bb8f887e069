"""`workrate trim`: the gateway decides whether its input is a whole mail or a plain-text body
(gateway/inbound/preview.py), by the whole header block, never by a first line shaped like a header."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.inbound.preview import is_raw_mail, preview_reply

WORKRATE = Path(sys.executable).parent / "workrate"
BULLETS = (b"One: Here's what I've got.\n\n- This would be the first bullet\n- And this is the second\n\n"
           b"On Tue, Nov 24, 2026 at 10:00 AM Kim Lee <kim@agency.test> wrote:\n> old text\n")


@pytest.mark.parametrize("body", [
    BULLETS,
    b"Hey:)\n\nSee you then.",
    b"Phone: 12345\nFax: 67890\nSkype: foobar\n\nThe brief is attached.",
    b"Note: the invoice is late.\nReason: the bank.\n\nKim",
    b"https://example.test/a:b\n\nA link.",
    b"",
    b"\n\n",
])
def test_plain_bodies_are_not_mail(body):
    # Behaviour: plain text whose first lines look like "Word: text" is a body, whatever its first line.
    assert not is_raw_mail(body)


@pytest.mark.parametrize("mail", [
    b"From: a@b.test\r\nSubject: x\r\n\r\nHi",
    b"Subject: x\n\n",
    b"Received: from x\n\tby y; Tue, 24 Nov 2026 10:00:00 +0000\nFrom: a@b.test\nX-Thing: 1\n\nbody",
    b"From kim@agency.test Tue Nov 24 10:00:00 2026\nFrom: kim@agency.test\nTo: b@c.test\n\nbody",
    b"Thread-Topic: x\nContent-Type: text/plain\nFrom: a@b.test",
])
def test_whole_mails_are_mail(mail):
    # Behaviour: a header block with a field that mail carries, up to a blank line (or the end), is a mail.
    assert is_raw_mail(mail)


def test_body_starting_with_a_word_and_colon_keeps_its_first_line():
    # Behaviour: "One: Here's what I've got." is the first line of the reply, not a header (issue 12 item 9).
    assert preview_reply(BULLETS) == ("One: Here's what I've got.\n\n- This would be the first bullet\n"
                                      "- And this is the second")


def test_cli_trims_plain_bodies_and_whole_mails():
    # Behaviour: the `workrate trim` command prints the same for a plain body and for that body in a mail.
    mail = (b"From: Bob <bob@acme.test>\r\nTo: reply@x.test\r\nSubject: Re: brief\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + BULLETS.replace(b"\n", b"\r\n"))
    outputs = [subprocess.run([str(WORKRATE), "trim"], input=data, capture_output=True, check=True, timeout=120)
               .stdout.decode() for data in (BULLETS, mail)]
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("One: Here's what I've got.\n")
    assert "old text" not in outputs[0]
