"""Reply extraction end to end over a real SMTP conversation with the gateway on loopback: HTML formatting
is posted as Markdown (and rendered), and a forwarded message is posted under its note as a collapsed
"Forwarded message" block, with its attachment."""
from __future__ import annotations

from email.message import EmailMessage

from gateway_support import People, posts, send

from storage.rendering import sanitize_html

pytest_plugins = ["gateway_fixtures"]  # gateway, people

HTML_REPLY = (
    '<div dir="ltr"><p>Thanks Kim, <b>approved</b> with <i>one</i> change:</p>'
    "<ul><li>logo <strong>bigger</strong></li><li>see <a href=\"https://acme.test/brand\">the brand page</a></li></ul>"
    "<div>Bob<br>Acme</div></div><br>"
    '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Jun 5, 2017 at 12:22 PM Kim Lee '
    "&lt;kim@agency.test&gt; wrote:<br></div><blockquote class=\"gmail_quote\">The old draft text</blockquote></div>"
)
FORWARD_NOTE = "Could you look at the mail below? The printer needs an answer."
FORWARDED = (
    "---------- Forwarded message ---------\n"
    "From: Printer Co <orders@printer.test>\n"
    "Date: Mon, Jun 5, 2017 at 12:22 PM\n"
    "Subject: Proof for order 1234\n"
    "To: Bob Stone <bob@acme.test>\n\n"
    "The proof is attached. Please confirm the colours by Friday.\n\n"
    "On Sun, Jun 4, 2017 at 9:00 AM Bob Stone <bob@acme.test> wrote:\n"
    "> When will the proof be ready?\n"
)


def _mail(to: str, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Bob Stone <bob@acme.test>"
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = f"<{subject.replace(' ', '.').replace(':', '')}@acme.test>"
    return mail


def _send(gateway, people: People, mail: EmailMessage) -> None:
    code, text = send(gateway.port, bytes(mail).replace(b"\n", b"\r\n"), people.bob_address)
    assert code == 250, text


def test_html_only_reply_keeps_its_formatting(gateway, people: People):
    # Behaviour: bold, italics, a list, a link and line breaks written in HTML are posted as Markdown and shown
    # as such; the quoted part is still cut by its structure.
    mail = _mail(people.bob_address, "Re: the logo")
    mail.set_content(HTML_REPLY, subtype="html")
    _send(gateway, people, mail)
    [message] = posts(people.thread)
    assert message.text == ("Thanks Kim, **approved** with *one* change:\n\n- logo **bigger**\n"
                            "- see [the brand page](https://acme.test/brand)\n\nBob\nAcme")
    for part in ("<strong>approved</strong>", "<em>one</em>", "<li>logo <strong>bigger</strong></li>",
                 'href="https://acme.test/brand"', "Bob<br"):
        assert part in message.html
    assert "old draft" not in message.html


def test_multipart_reply_takes_the_formatting_of_its_html(gateway, people: People):
    # Behaviour: when the HTML part says what the plain part says, the formatted version is posted.
    mail = _mail(people.bob_address, "Re: the logo again")
    mail.set_content("Thanks Kim, approved with one change:\n\n- logo bigger\n- see the brand page "
                     "<https://acme.test/brand>\n\nBob\nAcme\n\nOn Mon, Jun 5, 2017 at 12:22 PM Kim Lee "
                     "<kim@agency.test> wrote:\n> The old draft text\n")
    mail.add_alternative(HTML_REPLY, subtype="html")
    _send(gateway, people, mail)
    [message] = posts(people.thread)
    assert "<strong>approved</strong>" in message.html and "<em>one</em>" in message.html
    assert "old draft" not in message.text


def test_forward_under_a_note_is_posted_as_a_collapsed_block_with_its_attachment(gateway, people: People):
    # Behaviour: the note is the message; the forwarded mail follows as a collapsed "Forwarded message" block
    # with its from, date, subject and text (its own quote trimmed); its attachment is kept.
    mail = _mail(people.bob_address, "Fwd: Proof for order 1234")
    mail.set_content(f"{FORWARD_NOTE}\n\n{FORWARDED}")
    mail.add_attachment(b"%PDF-1.4 proof", maintype="application", subtype="pdf", filename="proof.pdf")
    _send(gateway, people, mail)
    [message] = posts(people.thread)
    assert message.text.startswith(FORWARD_NOTE + "\n\n::: Forwarded message: Proof for order 1234\n")
    html = message.html
    assert html.startswith(f"<p>{FORWARD_NOTE}</p>\n<details><summary>Forwarded message: Proof for order 1234"
                           "</summary>")
    assert html.rstrip().endswith("</details>")
    for part in ("Printer Co", "orders@printer.test", "Mon, Jun 5, 2017 at 12:22 PM",
                 "The proof is attached. Please confirm the colours by Friday."):
        assert part in html
    assert "When will the proof be ready?" not in message.text
    assert [a.name for a in message.attachments] == ["proof.pdf"]
    assert sanitize_html(html) == html  # what pages and emails show keeps the block


def test_a_mail_that_is_only_a_forward_is_posted_as_the_block(gateway, people: People):
    # Behaviour: nothing written above the forward: the block is the message.
    mail = _mail(people.bob_address, "Fwd: Proof")
    mail.set_content(FORWARDED)
    _send(gateway, people, mail)
    [message] = posts(people.thread)
    assert message.text.startswith("::: Forwarded message: Proof for order 1234\n")
    assert message.html.startswith("<details><summary>Forwarded message: Proof for order 1234</summary>")
    assert "Please confirm the colours by Friday." in message.html
