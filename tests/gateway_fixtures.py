"""Fixtures of the gateway tests (loaded with pytest_plugins = ["gateway_fixtures"]): a workspace with
people and a real gateway on loopback."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gateway_support import GatewayThread, People, start_gateway

from config import Settings


@pytest.fixture
def people(settings: Settings, make: Any) -> People:
    ws = make.workspace("Acme Co")
    return People(workspace=ws, thread=make.thread(ws), kim=make.team("kim@agency.test", "Kim Lee"),
                  bob=make.client(ws, "bob@acme.test", "Bob Stone"),
                  eve=make.client(ws, "eve@acme.test", "Eve Park", access=False), settings=settings)


@pytest.fixture
def gateway(settings: Settings, database: object) -> Iterator[GatewayThread]:
    """A real gateway listening on a free loopback port, on its own event loop thread."""
    controller = start_gateway(settings)
    try:
        yield controller
    finally:
        controller.stop()
