"""The team's delivery line tells what holds an email (issue 18 follow-up): "in digest", "waiting: unread",
"scheduled 07:00" (a teammate's quiet hours, in the viewer's time zone) or just "scheduled" for a client's quiet
hours, whose times stay the client's own; "queued" only for what is on its way. A real relay on loopback, the
clock injected."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from outbound_relay import CapturingRelay, send_due
from web_support import World, sign_in

from config import Settings
from storage import notify_schedule as ns
from storage.mail_log import OutboxEmail
from storage.models import Message, User
from storage.notify_settings import set_modes, set_timing
from storage.outbox import delivery_status
from storage.posting import post_message

EVENING = dt.datetime(2027, 1, 14, 22, 30)  # a Thursday, naive UTC; 23:30 in Paris, 17:30 in New York
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def personal(settings: Settings, relay: CapturingRelay) -> Settings:
    return settings.replace(relay_url=relay.url, notify_delay=None, team_quiet_hours="")


def timing(user: User, world: World, mode: str, quiet: tuple[int, int] | None = None) -> None:
    set_modes(user, {world.acme.id: mode})
    set_timing(user, ns.Defaults(), unread_minutes=5, digest_minute=8 * 60, quiet=quiet)


@dataclass
class Held:
    to_clients: Message  # Kim's: Bob's digest, Cara's quiet hours (a client's)
    to_team: Message  # Cara's: Kim's unread window, Lee's quiet hours (in Paris), Max at once (sent)


@pytest.fixture
def held(world: World, personal: Settings, make: Any) -> Held:
    OutboxEmail.delete().execute()
    cara = make.client(world.acme, "cara@acme.test", "Cara Ames")
    lee = make.team("lee@agency.test", "Lee Park")
    max_ = make.team("max@agency.test", "Max Roe")
    User.update(time_zone="Europe/Paris").where(User.id == lee.id).execute()
    timing(world.client, world, ns.DIGEST)
    timing(cara, world, ns.NOW, quiet=(22 * 60, 7 * 60))
    timing(lee, world, ns.NOW, quiet=(22 * 60, 7 * 60))
    timing(max_, world, ns.NOW)
    to_clients = post_message(world.thread, world.team, "Evening update.", notify_delay=None, now=EVENING)
    to_team = post_message(world.thread, cara, "Evening question.", notify_delay=None, now=EVENING)
    send_due(personal, EVENING + dt.timedelta(minutes=1))
    return Held(to_clients, to_team)


def labels(status: dict[str, Any]) -> list[tuple[str, str, int]]:
    return sorted((h["label"], h["time"], h["count"]) for h in status["held"])


def test_held_emails_say_what_holds_them_in_the_viewers_time(held: Held, personal: Settings,
                                                             relay: CapturingRelay) -> None:
    ids = [held.to_clients.id, held.to_team.id]
    status = delivery_status(ids, now=EVENING + dt.timedelta(minutes=2), zone=NEW_YORK)
    assert [r.rcpt_tos for r in relay.received] == [["max@agency.test"]]
    clients, team = status[held.to_clients.id], status[held.to_team.id]
    assert (clients["pending"], clients["queued"], clients["sent"]) == (2, 0, 0)
    # Cara's quiet hours are hers: "scheduled", no time.
    assert labels(clients) == [("in digest", "", 1), ("scheduled", "", 1)]
    # Lee's quiet hours end at 07:00 in Paris: 01:00 on Friday for a viewer in New York.
    assert (team["pending"], team["queued"], team["sent"]) == (2, 0, 1)
    assert labels(team) == [("scheduled", "Fri 01:00", 1), ("waiting: unread", "", 1)]
    # Once their time has come they are on their way ("queued"); then sent.
    friday = dt.datetime(2027, 1, 15, 8, 0)
    due = delivery_status(ids, now=friday, zone=NEW_YORK)
    assert [(d["queued"], d["held"]) for d in due.values()] == [(2, []), (2, [])]
    send_due(personal, friday)
    assert [d["sent"] for d in delivery_status(ids, now=friday).values()] == [2, 3]


def test_a_retry_and_the_operators_delay_are_queued_not_held(world: World, held: Held) -> None:
    # A held email that failed once waits for its retry: that is no longer the person's timing.
    (OutboxEmail.update(attempts=1)
     .where((OutboxEmail.message == held.to_clients.id) & (OutboxEmail.recipient == world.client.id)).execute())
    later = post_message(world.thread, world.team, "With the operator's delay.", notify_delay=600,
                         now=EVENING + dt.timedelta(minutes=3))
    status = delivery_status([held.to_clients.id, later.id], now=EVENING + dt.timedelta(minutes=4))
    assert status[held.to_clients.id]["queued"] == 1 and labels(status[held.to_clients.id]) == [("scheduled", "", 1)]
    assert status[later.id]["queued"] == status[later.id]["pending"] == 2 and status[later.id]["held"] == []


def test_the_thread_shows_it_to_the_team_in_their_own_time_zone(app: Any, world: World, held: Held) -> None:
    User.update(time_zone="America/New_York").where(User.id == world.team.id).execute()
    html = sign_in(app.test_client(), world.team).get("/w/acme").get_data(as_text=True)

    def line(message: Message) -> str:
        article = html[html.index(f'id="m-{message.id}"'):]
        article = article[:article.index("</article>")]
        found = article[article.index('class="delivery"'):]
        return " ".join(found[:found.index("</p>")].split())

    clients, team = line(held.to_clients), line(held.to_team)
    assert "1 in digest" in clients and "queued" not in clients
    assert '<span class="held" title="Held by the recipient\'s email timing">1 scheduled</span>' in clients
    assert "1 waiting: unread" in team and "1 sent" in team
    assert '1 scheduled <time datetime="2027-01-15T06:00:00Z" data-local="1">Fri 01:00</time>' in team
    assert 'data-pending="2"' in team  # the page keeps asking until they are sent
