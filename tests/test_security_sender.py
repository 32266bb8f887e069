"""Issue 16, a mail door that checks who is knocking (SENDER_CHECKS = dns): SPF, DKIM and DMARC evaluated
by the gateway, with DNS answered from zone data written here (never the network)."""
from __future__ import annotations

import base64
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns_fake import ZoneResolver
from gateway_support import People, eml, inbound_rows, outcome_line, posts, reply_line, send, start_gateway

from config import Settings
from gateway.errors import HeldForConfirmation
from gateway.inbound.mail_auth import evaluate, org_domain, use_resolver
from storage.mail_log import OutboxEmail
from storage.posting import post_message

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
PUBLIC_TXT = "v=DKIM1; k=rsa; p=" + base64.b64encode(_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def signed(raw: bytes, domain: str = "agency.test") -> bytes:
    return dkim.sign(raw, b"s1", domain.encode(), PRIVATE_PEM, include_headers=[b"from", b"to", b"subject"]) + raw


@pytest.fixture
def checked(settings: Settings, database: object) -> Any:
    """A gateway with SENDER_CHECKS = dns whose DNS is the zone the test fills in (zone.zone[...] = ...)."""
    settings = settings.replace(sender_checks="dns")
    zone = ZoneResolver({})
    use_resolver(settings, zone)
    controller = start_gateway(settings)
    controller.zone = zone
    try:
        yield controller
    finally:
        controller.stop()


def test_evaluation_reads_spf_dkim_and_dmarc_from_the_zone() -> None:
    zone = ZoneResolver({("acme.test", "TXT"): ["v=spf1 ip4:192.0.2.0/24 -all"],
                        ("_dmarc.acme.test", "TXT"): ["v=DMARC1; p=reject"],
                        ("s1._domainkey.agency.test", "TXT"): [PUBLIC_TXT]})
    spf_pass = evaluate(zone, b"", ip="192.0.2.9", helo="", mail_from="bob@acme.test", from_domain="acme.test",
                        dkim_signatures=0)
    assert (spf_pass.spf, spf_pass.aligned_pass, spf_pass.dmarc) == ("pass", True, "pass")
    spf_fail = evaluate(zone, b"", ip="127.0.0.1", helo="", mail_from="bob@acme.test", from_domain="acme.test",
                        dkim_signatures=0)
    assert (spf_fail.spf, spf_fail.fails_outright, spf_fail.dmarc, spf_fail.policy) == ("fail", True, "fail",
                                                                                       "reject")
    raw = signed(eml("plain_reply.eml", to="x@reply.test", sender="kim@agency.test"))
    good = evaluate(zone, raw, ip="127.0.0.1", helo="", mail_from="", from_domain="agency.test", dkim_signatures=1)
    assert good.dkim == [("agency.test", "pass")] and good.dkim_aligned
    bad = evaluate(zone, raw.replace(b"Looks great", b"Looks grim"), ip="127.0.0.1", helo="", mail_from="",
                   from_domain="agency.test", dkim_signatures=1)
    assert bad.dkim == [("agency.test", "fail")] and bad.fails_outright
    assert org_domain("mail.example.co.uk") == "example.co.uk"


def test_reply_at_with_a_notification_message_id_no_longer_posts_as_the_team(checked: Any, people: People) -> None:
    # The audit: through reply@ with a notification's Message-ID in In-Reply-To (it travels in every reply's
    # headers), a forged From and envelope posted as a team member, visible to the client. Now reply@ posts
    # only on an aligned SPF or DKIM pass; without one it is held until Kim confirms by email.
    message = post_message(people.thread, people.bob, "Is the draft ready?")
    mid = "<wr.7.0123456789ab@reply.test>"
    OutboxEmail.update(mail_message_id=mid).where(OutboxEmail.message == message.id).execute()
    forged = eml("plain_reply.eml", to="reply@reply.test", sender="kim@agency.test").replace(
        b"Subject:", f"In-Reply-To: {mid}\r\nSubject:".encode())
    code, text = send(checked.port, forged, "reply@reply.test", sender="kim@agency.test")
    assert reply_line(code, text) == outcome_line(HeldForConfirmation())
    assert [m.text for m in posts(people.thread)] == ["Is the draft ready?"]
    assert "held for confirmation: reply@" in inbound_rows()[-1].auth
    # the real Kim, whose domain publishes SPF for the sending address: posted
    checked.zone.zone[("agency.test", "TXT")] = ["v=spf1 ip4:127.0.0.1 -all"]
    code, _ = send(checked.port, forged.replace(b"@client.test>", b"@client.test2>"), "reply@reply.test",
                   sender="kim@agency.test")
    assert code == 250 and "authenticated" in inbound_rows()[-1].auth


def test_an_internal_address_asks_more_than_a_known_from(checked: Any, people: People) -> None:
    # The audit: whoever knew a team member's internal reply address could post an internal note as them by
    # writing their From. Without an aligned pass the envelope sender must be the very From address, or
    # the post waits for Kim's confirmation by email.
    address = people.address(people.kim, internal=True)
    raw = eml("plain_reply.eml", to=address, sender="kim@agency.test")
    code, text = send(checked.port, raw, address, sender="mallory@evil.test")
    assert reply_line(code, text) == outcome_line(HeldForConfirmation()) and posts(people.thread) == []
    assert "envelope sender is not From" in inbound_rows()[-1].auth
    code, _ = send(checked.port, signed(raw.replace(b"@client.test>", b"@client.test3>")), address,
                   sender="mallory@evil.test")
    # Signed, but the zone has no key: a permerror (anyone can name a selector), not a pass: held.
    assert reply_line(code, _) == outcome_line(HeldForConfirmation())
    assert "agency.test:permerror" in inbound_rows()[-1].auth
    checked.zone.zone[("s1._domainkey.agency.test", "TXT")] = [PUBLIC_TXT]
    tampered = signed(raw.replace(b"@client.test>", b"@client.test5>")).replace(b"Looks great", b"Looks grim")
    code, _ = send(checked.port, tampered, address, sender="mallory@evil.test")
    assert code == 550 and "agency.test:fail" in inbound_rows()[-1].auth  # a signature that does not verify
    code, _ = send(checked.port, signed(raw.replace(b"@client.test>", b"@client.test4>")), address,
                   sender="bounces@esp.test")
    assert code == 250 and posts(people.thread)[-1].is_internal


def test_spf_fail_and_dmarc_reject_are_refused_and_none_is_accepted_as_unauthenticated(
        checked: Any, people: People) -> None:
    address = people.bob_address
    code, _ = send(checked.port, eml("plain_reply.eml", to=address), address)
    assert code == 250 and "unauthenticated" in inbound_rows()[-1].auth
    checked.zone.zone[("acme.test", "TXT")] = ["v=spf1 ip4:192.0.2.1 -all"]
    code, text = send(checked.port, eml("plain_reply.eml", to=address), address)
    assert code == 550 and "SPF or DKIM" in text
    checked.zone.zone[("acme.test", "TXT")] = ["v=spf1 ?all"]
    checked.zone.zone[("_dmarc.acme.test", "TXT")] = ["v=DMARC1; p=reject"]
    code, text = send(checked.port, eml("plain_reply.eml", to=address), address)
    assert code == 550 and "DMARC" in text and "refused: DMARC policy" in inbound_rows()[-1].auth
    assert len(posts(people.thread)) == 1


def test_without_dns_the_checks_say_temperror_at_once_instead_of_waiting_for_every_mail() -> None:
    # SENDER_CHECKS = dns is the default: a gateway whose DNS is down must not wait out a timeout per mail.
    from procs import free_port

    from gateway.inbound.dns_lookup import DnsPythonResolver, DnsUnavailable

    resolver = DnsPythonResolver(lifetime=1.0)
    resolver._resolver.nameservers = ["127.0.0.1"]
    resolver._resolver.port = free_port()  # nothing answers there (loopback only)
    asked = []
    real_resolve = resolver._resolver.resolve

    def resolve(*args: Any, **kwargs: Any) -> Any:  # the real resolver, counted
        asked.append(args)
        return real_resolve(*args, **kwargs)

    resolver._resolver.resolve = resolve  # type: ignore[method-assign]
    for _ in range(50):
        with pytest.raises(DnsUnavailable):
            resolver.lookup("acme.test", "TXT")
    assert len(asked) == 1  # after the first timeout, the others are answered at once without asking
    result = evaluate(resolver, b"", ip="192.0.2.9", helo="", mail_from="bob@acme.test", from_domain="acme.test",
                      dkim_signatures=0)
    assert (result.spf, result.dmarc, result.fails_outright) == ("temperror", "temperror", False)
