"""Issue 16, SMTP connections: one peer cannot take every connection (SMTP_CONNECTIONS_PER_PEER), and a
connection that delivers no mail is closed after a bounded time and number of commands, NOOP or not."""
from __future__ import annotations

import smtplib
import socket
import time

import pytest
from gateway_support import People, eml, outcome_line, posts, reply_line, start_gateway

from gateway import errors
from gateway.smtp.threads import peer_key

OTHER_ADDRESS = "127.0.1.1"  # loopback too, but another address (and another /24) than 127.0.0.1


def _greeting(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_200_idle_connections_from_one_address_no_longer_block_mail_from_another(settings, people: People):
    # Before: the 200 connections took every slot of SMTP_MAX_CONNECTIONS and everyone else got 421.
    controller = start_gateway(settings.replace(smtp_max_connections=200, smtp_connections_per_peer=20))
    held: list[socket.socket] = []
    try:
        greetings = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", controller.port), timeout=10)
            held.append(sock)
            greetings.append(_greeting(sock).decode().strip())
        served = [g for g in greetings if g.startswith("220 ")]
        refused = [g for g in greetings if not g.startswith("220 ")]
        assert len(served) == 20
        assert set(refused) == {outcome_line(errors.TooManyFromYou())}
        assert errors.TooManyFromYou().smtp_reply.startswith("421 4.7.0 ")
        # The 20 still open and idle, someone else's mail goes through.
        address = people.bob_address
        client = smtplib.SMTP("127.0.0.1", controller.port, timeout=10, source_address=(OTHER_ADDRESS, 0))
        try:
            client.ehlo("other.test")
            client.mail("bob@acme.test")
            assert client.rcpt(address)[0] == 250
            code, text = client.data(eml("plain_reply.eml", to=address))
            assert code == 250, text
        finally:
            client.quit()
        assert len(posts(people.thread)) == 1
        # One of the first address's connections ends: its next one is served again.
        held.pop(0).close()
        deadline = time.monotonic() + 10
        while True:
            sock = socket.create_connection(("127.0.0.1", controller.port), timeout=10)
            held.append(sock)
            if _greeting(sock).startswith(b"220 "):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        controller.stop()


def test_a_noop_loop_is_closed_after_the_command_budget(settings, people: People):
    # Before: every NOOP restarted the silence timeout, so a NOOP loop held its connection for ever.
    with start_gateway(settings.replace(smtp_commands_per_mail=30)) as controller:
        client = controller.connect()
        replies = []
        with pytest.raises(smtplib.SMTPServerDisconnected):
            for _ in range(100):
                replies.append(client.noop())
        assert len(replies) <= 30
        assert reply_line(replies[-1][0], replies[-1][1].decode()) == outcome_line(errors.NoProgress())


def test_noop_and_rset_do_not_extend_a_connection_past_the_idle_bound(settings, people: People):
    # The silence timeout is long (300 s), the no-mail bound short: commands keep coming, yet it ends.
    with start_gateway(settings.replace(smtp_idle_session_seconds=1.0)) as controller:
        client = controller.connect()
        start = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            while time.monotonic() - start < 20:
                client.noop()
                client.rset()
                time.sleep(0.1)
        assert time.monotonic() - start < 10


def test_a_delivered_mail_restarts_the_budget(settings, people: People):
    # A sender delivering mail on one connection is never cut off by the no-progress bounds.
    with start_gateway(settings.replace(smtp_commands_per_mail=30)) as controller:
        address = people.bob_address
        with controller.connect() as client:
            for _mail in range(3):
                for _ in range(20):
                    assert client.noop()[0] == 250
                client.mail("bob@acme.test")
                client.rcpt(address)
                code, text = client.data(eml("plain_reply.eml", to=address))
                assert code == 250, text
        assert len(posts(people.thread)) == 3


def test_connections_count_per_address_and_per_ipv6_64() -> None:
    assert peer_key(("192.0.2.7", 25)) == "192.0.2.7"
    assert peer_key(("2001:db8:1:2:aaaa::1", 25, 0, 0)) == peer_key(("2001:db8:1:2:bbbb::9", 25, 0, 0))
    assert peer_key(("::ffff:192.0.2.7", 25, 0, 0)) == "192.0.2.7"
