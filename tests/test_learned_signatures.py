"""Signatures learned per sender, over a real SMTP conversation with the gateway on loopback: a block that
ended two of one sender's accepted mails is cut from the third (and shown as trimmed), never learned
across senders, and not cut once the team undid it. Also the pure block finder."""
from __future__ import annotations

from email.message import EmailMessage

from gateway_support import People, posts, send

from gateway.inbound.extract import Trimmed, trim_text
from gateway.inbound.learned_signatures import cut_from, cut_learned, trailing_blocks
from storage.learned_signatures import (
    MAX_PER_SENDER,
    LearnedSignature,
    learned_keys,
    remember_blocks,
    set_cut,
    signatures_of,
)

SIGNATURE = "Bob Stone\nHead of Growth, Acme Co\nUnit 4, Canal Yard"
REPLIES = ("The draft looks good to me.", "Friday works for the call.", "Please send the invoice to accounts.")


def _mail(n: int, body: str, sender: str = "Bob Stone <bob@acme.test>") -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "reply@x.test"
    mail["Subject"] = f"Re: plan {n}"
    mail["Message-ID"] = f"<plan-{n}-{abs(hash(sender))}@acme.test>"
    mail.set_content(body)
    return bytes(mail).replace(b"\n", b"\r\n")


def _send(gateway, people: People, n: int, body: str, *, user=None, sender="bob@acme.test",
          header="Bob Stone <bob@acme.test>") -> None:
    code, text = send(gateway.port, _mail(n, body, header), people.address(user or people.bob), sender=sender)
    assert code == 250, text


def test_a_block_ending_two_mails_is_cut_from_the_third(gateway, people: People):
    # Behaviour: no "-- " delimiter, and the block is not a contact block the fixed rules know; after two
    # accepted mails ending with it, the third mail's copy is cut and kept as trimmed.
    for n, reply in enumerate(REPLIES[:2]):
        _send(gateway, people, n, f"{reply}\n\nThanks,\n{SIGNATURE}\n")
    first, second = posts(people.thread)
    assert SIGNATURE in first.text and SIGNATURE in second.text  # not cut before it repeated
    _send(gateway, people, 2, f"{REPLIES[2]}\n\nBest,\n{SIGNATURE}\n\nOn Mon, Kim <kim@agency.test> wrote:\n> hi\n")
    third = posts(people.thread)[-1]
    assert third.text == f"{REPLIES[2]}\n\nBest,"
    assert third.trimmed_text.startswith(SIGNATURE) and "> hi" in third.trimmed_text
    [learned] = signatures_of("bob@acme.test")
    assert learned.cut and learned.seen == 2 and learned.text == SIGNATURE


def test_blocks_are_not_learned_across_senders(gateway, people: People, make):
    # Behaviour: the same block from two different senders counts once for each: Bob's second mail keeps it
    # (after Dan's), and only Bob's two mails teach it to Bob.
    dan = make.client(people.workspace, "dan@acme.test", "Dan Roe")
    _send(gateway, people, 0, f"{REPLIES[0]}\n\n{SIGNATURE}\n")
    _send(gateway, people, 1, f"{REPLIES[1]}\n\n{SIGNATURE}\n", user=dan, sender="dan@acme.test",
          header="Dan Roe <dan@acme.test>")
    _send(gateway, people, 2, f"{REPLIES[2]}\n\n{SIGNATURE}\n")
    assert all(SIGNATURE in message.text for message in posts(people.thread))
    assert learned_keys("dan@acme.test") == frozenset()
    [learned] = signatures_of("bob@acme.test")
    assert learned.seen == 2


def test_refused_mail_teaches_nothing(gateway, people: People):
    # Behaviour: only accepted, posted mail is remembered: Eve has no access, her mails are refused.
    for n in range(3):
        code, _ = send(gateway.port, _mail(n, f"{REPLIES[n]}\n\n{SIGNATURE}\n", "Eve Park <eve@acme.test>"),
                       people.address(people.eve), sender="eve@acme.test")
        assert code >= 500
    assert LearnedSignature.select().count() == 0


def test_an_undone_signature_is_not_cut_nor_learned_again(gateway, people: People):
    # Behaviour: after the team's undo the block stays in the sender's mails however often it repeats;
    # "cut again" brings it back.
    for n in range(2):
        _send(gateway, people, n, f"{REPLIES[n]}\n\n{SIGNATURE}\n")
    [learned] = signatures_of("bob@acme.test")
    set_cut(learned, people.kim, cut=False)
    for n in (2, 3):
        _send(gateway, people, n, f"Reply {n}.\n\n{SIGNATURE}\n")
    assert all(SIGNATURE in message.text for message in posts(people.thread))
    [learned] = signatures_of("bob@acme.test")
    assert not learned.cut and learned.seen == 4 and learned.undone_by_id == people.kim.id
    set_cut(learned, people.kim, cut=True)
    _send(gateway, people, 4, f"Reply 4.\n\n{SIGNATURE}\n")
    assert posts(people.thread)[-1].text == "Reply 4."


def test_trailing_blocks_start_after_a_blank_or_closing_line_and_leave_text_above():
    text = f"Hello.\n\nThanks,\n{SIGNATURE}"
    assert [b.text for b in trailing_blocks(text)] == [SIGNATURE]  # not from inside the block
    assert trailing_blocks(SIGNATURE) == []  # nothing above: the whole mail is no signature
    assert trailing_blocks("Hi.\n\nKim") == []  # one line is a closing, not a signature
    assert trailing_blocks("Hi.\n\n> quoted\n> lines") == []


def test_a_block_is_recognised_through_whitespace_markup_and_link_forms():
    plain = "Hi.\n\nBob Stone\nAcme Co  |  <https://acme.test>"
    html = "Sure.\n\n**Bob Stone**\nAcme Co | [acme.test](https://acme.test)"
    learned = frozenset(block.key for block in trailing_blocks(plain))
    assert cut_learned(html, learned) == ("Sure.", "**Bob Stone**\nAcme Co | [acme.test](https://acme.test)")
    assert cut_learned("Sure.\n\nBob Stone\nAcme Ltd", learned) is None


def test_a_forward_alone_is_not_cut_nor_learned_from():
    result = trim_text("---------- Forwarded message ---------\nFrom: A <a@x.test>\nSubject: s\n\n"
                       f"The text.\n\n{SIGNATURE}\n")
    assert result.forward is not None and result.forward.alone
    assert cut_from(result, frozenset(b.key for b in trailing_blocks(f"x\n\n{SIGNATURE}"))) == (result, [])
    plain = Trimmed(f"x\n\n{SIGNATURE}", "")
    assert [b.text for b in cut_from(plain, frozenset())[1]] == [SIGNATURE]


def test_a_sender_can_make_us_keep_only_so_many_blocks(database):
    # Behaviour: past MAX_PER_SENDER blocks, the oldest seen once go; learned ones stay.
    remember_blocks("a@x.test", [("learned", "A\nB")])
    remember_blocks("a@x.test", [("learned", "A\nB")])
    for n in range(MAX_PER_SENDER * 2):
        remember_blocks("a@x.test", [(f"k{n}", "x" * 5000)])
    rows = list(LearnedSignature.select().where(LearnedSignature.sender == "a@x.test"))
    assert len(rows) == MAX_PER_SENDER and "learned" in {row.key for row in rows}
    assert max(len(row.text) for row in rows) <= 1000
    assert learned_keys("A@X.test") == frozenset({"learned"})
