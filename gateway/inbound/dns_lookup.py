"""DNS for checking senders (SPF, DKIM, DMARC): one small interface, answered by dnspython in production
and by zone data in tests (tests/dns_fake.py), never the network in tests.

Answers are TXT strings, addresses, MX hosts or PTR names; no records (or no such name) is an empty list;
DnsUnavailable means the question could not be answered (timeout, no server): a temporary error.
"""
from __future__ import annotations

import time
from typing import Protocol

QTYPES = ("TXT", "A", "AAAA", "MX", "PTR")


class DnsUnavailable(Exception):
    """DNS did not answer (timeout, no server reachable)."""


class Resolver(Protocol):
    def lookup(self, name: str, qtype: str) -> list[str] | list[tuple[int, str]]:
        """TXT: each record's text; A/AAAA: addresses; MX: (preference, host); PTR: names."""
        ...


class DnsPythonResolver:
    """The system's resolver through dnspython, with a short lifetime per question, answers cached for their
    TTL (the same few sender domains ask the same questions all day), and a pause after DNS failed: for
    BACKOFF seconds every question is a temporary error at once, so that a gateway without DNS does not wait
    out a timeout for every mail."""

    BACKOFF = 30.0  # seconds

    def __init__(self, lifetime: float = 3.0) -> None:
        import dns.resolver

        self._resolver = dns.resolver.Resolver()
        self._resolver.cache = dns.resolver.LRUCache(10_000)
        self._lifetime = lifetime
        self._down_until = 0.0

    def lookup(self, name: str, qtype: str) -> list[str] | list[tuple[int, str]]:
        import dns.exception
        import dns.resolver

        if time.monotonic() < self._down_until:
            raise DnsUnavailable("DNS did not answer a moment ago")
        try:
            answer = self._resolver.resolve(name, qtype, lifetime=self._lifetime)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
            self._down_until = time.monotonic() + self.BACKOFF
            raise DnsUnavailable(str(e)) from e
        if qtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        if qtype == "MX":
            return [(int(r.preference), r.exchange.to_text(True)) for r in answer]
        if qtype == "PTR":
            return [r.target.to_text(True) for r in answer]
        return [r.address for r in answer]


__all__ = ["Resolver", "DnsPythonResolver", "DnsUnavailable", "QTYPES"]
