"""A daily digest says it is one, at the top of its new messages ("Your daily digest: 3 messages since Thursday
08:00", in the recipient's time), in HTML and plain text; its subject stays the episode's. A real relay on
loopback, the clock injected."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from outbound_relay import CapturingRelay, new_part, send_due
from web_support import World

from config import Settings
from storage import notify_schedule as ns
from storage.mail_log import OutboxEmail
from storage.models import User
from storage.notify_settings import set_modes, set_timing
from storage.posting import post_message

THURSDAY = dt.datetime(2026, 12, 3, 10, 0)  # naive UTC; 11:00 in Paris
FRIDAY_8_PARIS = dt.datetime(2026, 12, 4, 7, 0)


def test_a_digest_says_so_and_keeps_the_episodes_subject(world: World, settings: Settings,
                                                         relay: CapturingRelay) -> None:
    personal = settings.replace(relay_url=relay.url, notify_delay=None)
    OutboxEmail.delete().execute()
    User.update(time_zone="Europe/Paris").where(User.id == world.client.id).execute()
    set_modes(world.client, {world.acme.id: ns.DIGEST})
    set_timing(world.client, ns.Defaults(), unread_minutes=5, digest_minute=8 * 60, quiet=None)
    for i in range(3):
        post_message(world.thread, world.team, f"Thursday news {i}.", notify_delay=None,
                     now=THURSDAY + dt.timedelta(hours=i))
    send_due(personal, THURSDAY + dt.timedelta(hours=3))
    send_due(personal, FRIDAY_8_PARIS)
    [digest] = [r for r in relay.received if "bob@acme.test" in r.rcpt_tos]
    line = "Your daily digest: 3 messages since Thursday 08:00"
    text = new_part(digest.text())
    assert line in text and text.index(line) < text.index("Thursday news 0.")
    body = digest.html()[digest.html().index("<body"):]  # (the title holds the subject)
    assert line in body and body.index(line) < body.index("Thursday news 0.")
    subject = str(digest.mail["Subject"])
    assert "digest" not in subject.lower()
    if os.environ.get("WORKRATE_SHOW_DIGEST"):  # to look at it: the rendered HTML, for a browser screenshot
        Path(os.environ["WORKRATE_SHOW_DIGEST"]).write_text(digest.html())
    # Switched to at once, within the episode: no digest line, the same subject.
    set_modes(world.client, {world.acme.id: ns.NOW})
    post_message(world.thread, world.team, "Friday follow-up.", notify_delay=None, now=FRIDAY_8_PARIS)
    send_due(personal, FRIDAY_8_PARIS + dt.timedelta(minutes=1))
    later = [r for r in relay.received if "bob@acme.test" in r.rcpt_tos][1]
    assert "daily digest" not in later.text() and "daily digest" not in later.html()
    assert str(later.mail["Subject"]) == subject


def test_digest_since_is_the_digest_time_before_this_one() -> None:
    paris = ns.zone_of("Europe/Paris")
    timing = ns.Timing(mode=ns.DIGEST, unread_minutes=5, digest_minute=8 * 60, quiet=None, zone=paris)
    assert ns.digest_since(timing, THURSDAY) == dt.datetime(2026, 12, 3, 7, 0)  # Thursday 08:00 in Paris
    assert ns.digest_since(timing, dt.datetime(2026, 12, 3, 6, 0)) == dt.datetime(2026, 12, 2, 7, 0)
    assert ns.digest_since(dataclasses.replace(timing, mode=ns.NOW), THURSDAY) is None
