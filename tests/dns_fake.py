"""A Resolver answering from zone data written in the test: SPF, DKIM and DMARC without the network."""
from __future__ import annotations


class ZoneResolver:
    def __init__(self, zone: dict[tuple[str, str], list]) -> None:
        self.zone = {(name.lower().rstrip("."), qtype): values for (name, qtype), values in zone.items()}
        self.asked: list[tuple[str, str]] = []

    def lookup(self, name: str, qtype: str) -> list:
        self.asked.append((name, qtype))
        return list(self.zone.get((name.lower().rstrip("."), qtype), []))
