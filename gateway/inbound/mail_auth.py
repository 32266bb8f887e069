"""Who is knocking: SPF (pyspf), DKIM (dkimpy) and DMARC (its policy record, relaxed or strict alignment
on the organizational domain from the tld package's public suffix list), all through one Resolver.

The result says what passed and whether it is aligned with the From domain; authenticate.py decides.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import dkim
import spf
from tld import get_fld

from gateway.inbound.dns_lookup import DnsUnavailable, Resolver

log = logging.getLogger(__name__)

PASS, FAIL, NONE, TEMPERROR, PERMERROR = "pass", "fail", "none", "temperror", "permerror"


@dataclass
class AuthResult:
    spf: str = NONE  # pass, fail, softfail, neutral, none, temperror, permerror
    spf_domain: str = ""
    dkim: list[tuple[str, str]] = field(default_factory=list)  # (signing domain, pass/fail)
    dmarc: str = NONE  # pass, fail, none (no record), temperror
    policy: str = ""  # the From domain's DMARC policy: none, quarantine, reject
    spf_aligned: bool = False
    dkim_aligned: bool = False

    @property
    def aligned_pass(self) -> bool:
        return self.spf_aligned or self.dkim_aligned

    @property
    def fails_outright(self) -> bool:
        """An SPF or DKIM fail with no aligned pass: the mail is not what it says it is."""
        return not self.aligned_pass and (self.spf == FAIL or any(r == FAIL for _, r in self.dkim))

    @property
    def unauthenticated(self) -> bool:
        return not self.aligned_pass and not self.fails_outright

    def summary(self) -> str:
        signatures = ",".join(f"{d}:{r}" for d, r in self.dkim) or "none"
        return (f"spf={self.spf}({self.spf_domain or '-'}) dkim={signatures} dmarc={self.dmarc}"
                f"{'/' + self.policy if self.policy else ''}")


def org_domain(domain: str) -> str:
    """The organizational domain (example.co.uk for a.b.example.co.uk); the domain itself when unknown."""
    domain = domain.lower().rstrip(".")
    found = get_fld(domain, fix_protocol=True, fail_silently=True)
    return str(found) if found else domain


def aligned(a: str, b: str, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else bool(a and b) and org_domain(a) == org_domain(b)


class _SpfQuery(spf.query):
    """pyspf's evaluation, asking our Resolver instead of its own DNS."""

    def __init__(self, resolver: Resolver, **kwargs: object) -> None:
        self._resolver = resolver
        super().__init__(**kwargs)

    def dns(self, name: str, qtype: str, cnames: object = None, ignore_void: bool = False) -> list[object]:
        qtype = "TXT" if qtype == "SPF" else qtype
        try:
            values = self._resolver.lookup(str(name).rstrip(".").lower(), qtype)
        except DnsUnavailable as e:
            raise spf.TempError(f"DNS {e}") from e
        if qtype == "TXT":
            return [(str(v).encode(),) for v in values]
        return list(values)


def check_spf(resolver: Resolver, ip: str, mail_from: str, helo: str) -> tuple[str, str]:
    """(SPF result, the domain it is about: the envelope sender's, or HELO's for a null sender)."""
    domain = mail_from.rpartition("@")[2].lower() if "@" in mail_from else helo.lower()
    if not ip or not domain:
        return NONE, domain
    try:
        result, _code, _why = _SpfQuery(resolver, i=ip, s=mail_from or f"postmaster@{helo}", h=helo or domain,
                                        timeout=10).check()
    except Exception:
        log.debug("SPF check failed", exc_info=True)
        return "temperror", domain
    return str(result), domain


def check_dkim(resolver: Resolver, raw: bytes, signatures: int) -> list[tuple[str, str]]:
    """(signing domain, pass/fail/permerror/temperror) of each DKIM-Signature, at most 5.

    A signature whose key is not published is a permerror (RFC 6376 6.1.2), not a fail: anyone can write a
    signature naming a selector that does not exist, so it says nothing about the mail either way."""
    missing: list[bool] = []

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        text = name.decode() if isinstance(name, bytes) else name
        values = resolver.lookup(text.rstrip(".").lower(), "TXT")
        if not values:
            missing.append(True)
        return str(values[0]).encode() if values else b""

    results: list[tuple[str, str]] = []
    for index in range(min(signatures, 5)):
        checker = dkim.DKIM(raw)
        missing.clear()
        try:
            ok = checker.verify(idx=index, dnsfunc=dnsfunc)
        except DnsUnavailable:
            results.append((_dkim_domain(checker), TEMPERROR))
            continue
        except Exception:
            ok = False
        results.append((_dkim_domain(checker), PASS if ok else PERMERROR if missing else FAIL))
    return results


def _dkim_domain(checker: dkim.DKIM) -> str:
    domain = getattr(checker, "domain", b"") or b""
    return (domain.decode("ascii", "replace") if isinstance(domain, bytes) else str(domain)).lower()


def dmarc_record(resolver: Resolver, from_domain: str) -> dict[str, str] | None:
    """The DMARC record of the From domain or, failing that, of its organizational domain."""
    for name in dict.fromkeys((from_domain, org_domain(from_domain))):
        for text in resolver.lookup(f"_dmarc.{name}", "TXT"):
            text = str(text)
            if text.replace(" ", "").lower().startswith("v=dmarc1"):
                tags = {}
                for part in text.split(";"):
                    key, _, value = part.strip().partition("=")
                    tags[key.strip().lower()] = value.strip().lower()
                if name != from_domain and "sp" in tags:
                    tags["p"] = tags["sp"]
                return tags
    return None


def evaluate(resolver: Resolver, raw: bytes, *, ip: str, helo: str, mail_from: str, from_domain: str,
             dkim_signatures: int) -> AuthResult:
    """SPF, DKIM and DMARC for one mail. Never raises: DNS trouble becomes temperror."""
    result = AuthResult()
    result.spf, result.spf_domain = check_spf(resolver, ip, mail_from, helo)
    result.dkim = check_dkim(resolver, raw, dkim_signatures) if dkim_signatures else []
    try:
        record = dmarc_record(resolver, from_domain) if from_domain else None
    except DnsUnavailable:
        result.dmarc = TEMPERROR
        record = None
    strict_spf = bool(record and record.get("aspf") == "s")
    strict_dkim = bool(record and record.get("adkim") == "s")
    result.spf_aligned = result.spf == PASS and aligned(result.spf_domain, from_domain, strict_spf)
    result.dkim_aligned = any(r == PASS and aligned(d, from_domain, strict_dkim) for d, r in result.dkim)
    if record is not None:
        result.policy = record.get("p", "none")
        result.dmarc = PASS if result.aligned_pass else FAIL
    return result


_resolvers: dict[object, Resolver] = {}
_fallback: list[Resolver] = []  # use_resolver(None, …): for every gateway without a resolver of its own


def use_resolver(owner: object, resolver: Resolver | None) -> None:
    """Answers the DNS questions of the gateway run with settings `owner` from `resolver` (tests: zone data);
    owner None: of every gateway that has none of its own (None again: dnspython)."""
    if owner is None:
        _fallback[:] = [resolver] if resolver is not None else []
        _resolvers.clear()
    elif resolver is not None:
        _resolvers[owner] = resolver


def resolver_for(owner: object) -> Resolver:
    found = _resolvers.get(owner)
    if found is None and _fallback:
        return _fallback[0]
    if found is None:
        from gateway.inbound.dns_lookup import DnsPythonResolver

        found = _resolvers[owner] = DnsPythonResolver()
    return found


__all__ = ["use_resolver", "resolver_for", "AuthResult", "evaluate", "org_domain", "aligned", "check_spf",
           "check_dkim", "dmarc_record"]
