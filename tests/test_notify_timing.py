"""Emails that respect attention (issue 18, items 1, 2 and 6): each person's timing per workspace (at once, if
still unread after N minutes, a daily digest, off), quiet hours in their own time zone, what they have read
left out at send time, and the settings page. A real relay on loopback, the clock injected, never slept."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from outbound_relay import CapturingRelay, new_part, send_due
from web_support import World, post_form, sign_in

from config import Settings
from storage import notify_schedule as ns
from storage.mail_log import PENDING, SENT, SKIPPED, OutboxEmail
from storage.models import Message, User, utcnow
from storage.notify_settings import notification_rows, set_modes, set_notifications, set_timing
from storage.posting import post_message

T0 = dt.datetime(2026, 12, 3, 10, 0)  # a Thursday, naive UTC like every stored time
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def personal(settings: Settings, relay: CapturingRelay) -> Settings:
    """The product's default: NOTIFY_DELAY unset, so each person's own timing decides."""
    return settings.replace(relay_url=relay.url, notify_delay=None)


def post(world: World, text: str, at: dt.datetime, internal: bool = False) -> Message:
    return post_message(world.thread, world.team, text, internal=internal, notify_delay=None, now=at)


def to(relay: CapturingRelay, address: str) -> list[str]:
    """The new messages' part of each email to address (the earlier ones it repeats for context left out)."""
    return [new_part(r.text()) for r in relay.received if address in r.rcpt_tos]


def rows_of(user: User) -> list[OutboxEmail]:
    return list(OutboxEmail.select().where(OutboxEmail.recipient == user.id).order_by(OutboxEmail.id))


def choose(user: User, world: World, mode: str, **timing: Any) -> None:
    set_modes(user, {world.acme.id: mode})
    if timing:
        defaults = ns.Defaults()
        set_timing(user, defaults, unread_minutes=timing.get("unread_minutes", 5),
                   digest_minute=timing.get("digest_minute", ns.DEFAULT_DIGEST_MINUTE), quiet=timing.get("quiet"))


def clear_world_outbox() -> None:
    # The world fixture posts at the real time; these tests start from an empty outbox at T0.
    OutboxEmail.delete().execute()


# --- What stays unread ------------------------------------------------------------------------------------


def test_default_waits_n_minutes_and_a_message_read_live_is_not_emailed(app: Any, world: World, personal: Settings,
                                                                        relay: CapturingRelay) -> None:
    clear_world_outbox()
    seen = post(world, "Seen live on the open page.", T0)
    assert send_due(personal, T0) == 1 and relay.received == []  # held: unread for less than 5 minutes
    # The open portal page showed it as it arrived: the live display's call moves Bob's read marker.
    bob = sign_in(app.test_client(), world.client)
    assert post_form(bob, f"/messages/{seen.id}/read", json=True).status_code == 200
    unseen = post(world, "Arrived while Bob was away.", T0 + 2 * MIN)
    send_due(personal, T0 + 6 * MIN)  # the read one is dropped; the other is unread for 4 minutes only
    assert relay.received == []
    send_due(personal, T0 + 7 * MIN)
    emails = to(relay, "bob@acme.test")
    assert len(emails) == 1 and "Arrived while Bob was away." in emails[0]
    assert "Seen live on the open page." not in emails[0]
    status = {r.message_id: (r.status, r.last_error) for r in rows_of(world.client)}
    assert status[seen.id] == (SKIPPED, "read before the email went out") and status[unseen.id][0] == SENT


def test_nothing_is_sent_when_everything_was_read_on_a_later_page_load(app: Any, world: World, personal: Settings,
                                                                       relay: CapturingRelay) -> None:
    clear_world_outbox()
    post(world, "First.", T0)
    post(world, "Second.", T0 + MIN)
    assert sign_in(app.test_client(), world.client).get("/portal/w/acme").status_code == 200
    send_due(personal, T0 + 10 * MIN)
    assert relay.received == []
    assert {r.status for r in rows_of(world.client)} == {SKIPPED}


def test_a_burst_inside_the_window_is_one_email(world: World, personal: Settings, relay: CapturingRelay) -> None:
    clear_world_outbox()
    for i in range(4):  # four posts a second apart, the worker looking after each
        post(world, f"Burst {i}.", T0 + dt.timedelta(seconds=i))
        send_due(personal, T0 + dt.timedelta(seconds=i, milliseconds=500))
    assert relay.received == []
    send_due(personal, T0 + 5 * MIN)
    emails = to(relay, "bob@acme.test")
    assert len(emails) == 1
    assert [emails[0].index(f"Burst {i}.") for i in range(4)] == sorted(emails[0].index(f"Burst {i}.")
                                                                        for i in range(4))
    assert len(relay.received) == 1  # nobody else is emailed twice either


def test_immediately_sends_at_once_and_own_minutes_apply(world: World, personal: Settings,
                                                         relay: CapturingRelay) -> None:
    clear_world_outbox()
    choose(world.client, world, ns.NOW)
    post(world, "Right now.", T0)
    send_due(personal, T0)
    assert len(to(relay, "bob@acme.test")) == 1
    choose(world.client, world, ns.UNREAD, unread_minutes=30)
    post(world, "In half an hour.", T0 + MIN)
    send_due(personal, T0 + 30 * MIN)
    assert len(to(relay, "bob@acme.test")) == 1
    send_due(personal, T0 + 31 * MIN)
    assert len(to(relay, "bob@acme.test")) == 2


# --- Digest -------------------------------------------------------------------------------------------------


def test_digest_holds_exactly_what_stayed_unread_at_the_hour_of_their_time_zone(
        app: Any, world: World, personal: Settings, relay: CapturingRelay) -> None:
    clear_world_outbox()
    User.update(time_zone="Europe/Paris").where(User.id == world.client.id).execute()  # UTC+1 in December
    choose(world.client, world, ns.DIGEST, digest_minute=8 * 60)
    read_ones = [post(world, f"Read on the page {i}.", T0 + i * MIN) for i in range(2)]
    assert sign_in(app.test_client(), world.client).get("/portal/w/acme").status_code == 200
    for i in range(3):
        post(world, f"Stayed unread {i}.", T0 + dt.timedelta(hours=2 + i))
    post(world, "Internal: the margin is thin.", T0 + dt.timedelta(hours=3), internal=True)
    send_due(personal, T0 + dt.timedelta(hours=6))
    send_due(personal, dt.datetime(2026, 12, 4, 6, 59))  # 07:59 in Paris
    assert to(relay, "bob@acme.test") == []
    send_due(personal, dt.datetime(2026, 12, 4, 7, 0))  # 08:00 in Paris
    emails = to(relay, "bob@acme.test")
    assert len(emails) == 1
    assert all(f"Stayed unread {i}." in emails[0] for i in range(3))
    assert not any(m.text in emails[0] for m in read_ones)
    assert "margin" not in emails[0] and "Internal" not in emails[0]
    # The next digest holds only what came after.
    post(world, "Friday's news.", dt.datetime(2026, 12, 4, 9, 0))
    send_due(personal, dt.datetime(2026, 12, 4, 12, 0))
    assert len(to(relay, "bob@acme.test")) == 1
    send_due(personal, dt.datetime(2026, 12, 5, 7, 0))
    emails = to(relay, "bob@acme.test")
    assert len(emails) == 2 and "Friday's news." in emails[1] and "Stayed unread" not in emails[1]


def test_internal_notes_reach_the_team_digest_never_a_clients(world: World, personal: Settings, make: Any,
                                                              relay: CapturingRelay) -> None:
    clear_world_outbox()
    lee = make.team("lee@agency.test", "Lee Park")
    for person in (world.client, lee):
        choose(person, world, ns.DIGEST, digest_minute=9 * 60)
    post(world, "Client-visible plan.", T0 - dt.timedelta(hours=5))
    post(world, "Internal: budget is 40k.", T0 - dt.timedelta(hours=4), internal=True)
    send_due(personal, dt.datetime(2026, 12, 4, 9, 0))
    client_mail = "\n".join(to(relay, "bob@acme.test"))
    team_mail = "\n".join(to(relay, "lee@agency.test"))
    assert "Client-visible plan." in client_mail and "budget" not in client_mail
    assert "budget is 40k" in team_mail
    raw_to_bob = b"".join(r.raw for r in relay.received if "bob@acme.test" in r.rcpt_tos)
    assert b"budget" not in raw_to_bob


def test_a_held_digest_does_not_hold_back_an_immediate_email_about_another_workspace(
        world: World, personal: Settings, make: Any, relay: CapturingRelay) -> None:
    clear_world_outbox()
    lee = make.team("lee@agency.test", "Lee Park")
    set_modes(lee, {world.acme.id: ns.DIGEST, world.globex.id: ns.NOW})
    post_message(world.thread, world.client, "Acme news for the digest.", notify_delay=None, now=T0)
    send_due(personal, T0)
    post_message(world.globex_thread, world.other, "Globex needs an answer.", notify_delay=None, now=T0 + MIN)
    send_due(personal, T0 + MIN)
    emails = to(relay, "lee@agency.test")
    assert len(emails) == 1 and "Globex needs an answer." in emails[0]


def test_changing_the_choice_decides_again_at_once(world: World, personal: Settings, relay: CapturingRelay) -> None:
    clear_world_outbox()
    choose(world.client, world, ns.DIGEST)
    post(world, "Waiting for tomorrow's digest.", T0)
    send_due(personal, T0)
    assert rows_of(world.client)[0].next_attempt_at > T0 + dt.timedelta(hours=12)
    set_modes(world.client, {world.acme.id: ns.NOW})
    send_due(personal, utcnow())
    assert len(to(relay, "bob@acme.test")) == 1


# --- Quiet hours -------------------------------------------------------------------------------------------


def test_quiet_hours_hold_emails_until_they_end_in_the_persons_time_zone(world: World, personal: Settings,
                                                                        relay: CapturingRelay) -> None:
    clear_world_outbox()
    User.update(time_zone="America/New_York").where(User.id == world.client.id).execute()  # UTC-5 in December
    choose(world.client, world, ns.NOW, quiet=(22 * 60, 7 * 60))
    late = dt.datetime(2026, 12, 4, 4, 0)  # 23:00 in New York
    post(world, "Late-night question.", late)
    send_due(personal, late)
    send_due(personal, dt.datetime(2026, 12, 4, 11, 59))  # 06:59 there
    assert to(relay, "bob@acme.test") == []
    assert rows_of(world.client)[0].status == PENDING
    send_due(personal, dt.datetime(2026, 12, 4, 12, 0))  # 07:00 there: released
    assert len(to(relay, "bob@acme.test")) == 1


def test_team_default_quiet_hours_hold_the_team_not_clients(world: World, personal: Settings,
                                                            relay: CapturingRelay) -> None:
    clear_world_outbox()
    settings = personal.replace(team_quiet_hours="18:00-09:00")
    evening = dt.datetime(2026, 12, 3, 19, 0)  # UTC: both have no time zone
    post_message(world.thread, world.client, "Client writes in the evening.", notify_delay=None, now=evening)
    post(world, "Team answers in the evening.", evening + MIN)
    send_due(settings, evening + 10 * MIN)
    assert len(to(relay, "bob@acme.test")) == 1  # clients: no quiet hours unless they choose
    assert to(relay, "kim@agency.test") == []
    # Kim's own choice replaces the team's default.
    set_timing(world.team, ns.Defaults(team_quiet_hours="18:00-09:00"), unread_minutes=5,
               digest_minute=ns.DEFAULT_DIGEST_MINUTE, quiet=None)
    send_due(settings, evening + 11 * MIN)
    assert len(to(relay, "kim@agency.test")) == 1


# --- Off and the operator's override -------------------------------------------------------------------------


def test_off_sends_nothing(world: World, personal: Settings, relay: CapturingRelay) -> None:
    clear_world_outbox()
    post(world, "Posted while emails were on.", T0)
    send_due(personal, T0)
    set_notifications(world.client, {world.acme.id: False})  # turned off while that one waits
    post(world, "Nobody is told by email.", T0 + MIN)
    for minutes in (0, 5, 60 * 24):
        send_due(personal, T0 + minutes * MIN)
    assert to(relay, "bob@acme.test") == []
    assert [r.status for r in rows_of(world.client)] == [SKIPPED]


def test_notify_delay_zero_is_at_once_for_everyone_whatever_they_chose(world: World, settings: Settings,
                                                                       relay: CapturingRelay) -> None:
    clear_world_outbox()
    at_once = settings.replace(relay_url=relay.url, notify_delay=0)
    choose(world.client, world, ns.DIGEST, quiet=(0, 23 * 60 + 59))
    message = post_message(world.thread, world.team, "The operator says: at once.", notify_delay=0, now=T0)
    send_due(at_once, T0)
    assert len(to(relay, "bob@acme.test")) == 1
    assert message.id


# --- The schedule itself -------------------------------------------------------------------------------------


def test_send_at_rules() -> None:
    utc, paris = ns.zone_of(None), ns.zone_of("Europe/Paris")
    assert ns.zone_of("Not/AZone") is utc
    now = dt.datetime(2026, 3, 28, 12, 0)
    unread = ns.Timing(ns.UNREAD, 5, 480, None, utc)
    assert ns.send_at(unread, now - MIN, now) == now + 4 * MIN
    assert ns.send_at(unread, now - 10 * MIN, now) == now  # overdue: at once
    # A digest the night of a DST change (Paris moves to UTC+2 on Sunday 29 March at 02:00).
    digest = ns.Timing(ns.DIGEST, 5, 8 * 60, None, paris)
    assert ns.send_at(digest, now, now) == dt.datetime(2026, 3, 29, 6, 0)
    # Quiet hours that wrap past midnight, and ones inside a day.
    night, lunch = (22 * 60, 7 * 60), (12 * 60, 14 * 60)
    day = dt.datetime(2026, 3, 28)
    assert ns.after_quiet_hours(day.replace(hour=23), night, utc) == dt.datetime(2026, 3, 29, 7)
    assert ns.after_quiet_hours(day.replace(hour=6), night, utc) == day.replace(hour=7)
    assert ns.after_quiet_hours(day.replace(hour=12), night, utc) == day.replace(hour=12)
    assert ns.after_quiet_hours(day.replace(hour=13), lunch, utc) == day.replace(hour=14)
    assert ns.parse_quiet_hours("22:00-7:00") == (1320, 420) and ns.parse_quiet_hours("") is None
    for bad in ("25:00-07:00", "22:00-22:00", "evening"):
        with pytest.raises(ValueError):
            ns.parse_quiet_hours(bad)


# --- The settings page ----------------------------------------------------------------------------------------


def test_settings_page_saves_mode_minutes_digest_time_and_quiet_hours(app: Any, world: World) -> None:
    bob = sign_in(app.test_client(), world.client)
    page = bob.get("/settings/notifications").get_data(as_text=True)
    assert 'id="mode-acme"' in page and 'name="unread_minutes"' in page and 'id="time-zone-link"' in page
    assert 'value="unread" selected' in page  # the default
    form = {"shown": str(world.acme.id), "email_on": str(world.acme.id), f"mode-{world.acme.id}": "digest",
            "unread_minutes": "15", "digest_time": "07:30", "quiet_from": "21:00", "quiet_until": "06:30"}
    assert post_form(bob, "/settings/notifications", form).status_code == 302
    assert notification_rows(world.client)[0].mode == ns.DIGEST
    timing = ns.timing_for(world.client, world.thread.id, ns.Defaults())
    assert (timing.mode, timing.unread_minutes, timing.digest_minute, timing.quiet) == \
        (ns.DIGEST, 15, 7 * 60 + 30, (21 * 60, 6 * 60 + 30))
    page = bob.get("/settings/notifications").get_data(as_text=True)
    assert 'value="digest" selected' in page and 'value="07:30"' in page and 'value="21:00"' in page


def test_settings_page_errors_sit_next_to_their_field_and_keep_what_was_typed(app: Any, world: World) -> None:
    bob = sign_in(app.test_client(), world.client)
    form = {"shown": str(world.acme.id), "email_on": str(world.acme.id), f"mode-{world.acme.id}": "weekly",
            "unread_minutes": "0", "digest_time": "25:99", "quiet_from": "22:00", "quiet_until": ""}
    answer = post_form(bob, "/settings/notifications", form)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    for field_id in ("notify-unread_minutes-error", "notify-digest_time-error", "notify-quiet_until-error",
                     "mode-acme-error"):
        assert f'id="{field_id}"' in page, field_id
    assert 'value="25:99"' in page and 'value="22:00"' in page and 'value="0"' in page
    assert ns.NotifyPreference.select().count() == 0  # nothing saved
    # Without the CSRF token the form is refused.
    assert bob.post("/settings/notifications", data={**form, "csrf_token": "forged"}).status_code == 400


def test_a_new_time_zone_times_held_emails_again(app: Any, world: World, personal: Settings,
                                                 relay: CapturingRelay) -> None:
    # Bob's digest was timed at 08:00 UTC; he sets Tokyo (UTC+9) at /me: it comes at 08:00 in Tokyo instead.
    # (The page uses the real clock, so this test's times start from it.)
    clear_world_outbox()
    choose(world.client, world, ns.DIGEST)
    start = utcnow()
    post(world, "For the morning digest.", start)
    send_due(personal, start)
    assert rows_of(world.client)[0].next_attempt_at == ns.next_local_time(start, 8 * 60, dt.UTC)
    bob = sign_in(app.test_client(), world.client)
    assert post_form(bob, "/me", {"time_zone": "Asia/Tokyo"}, json=True).status_code == 200
    send_due(personal, utcnow())
    tokyo_morning = ns.next_local_time(start, 8 * 60, ns.zone_of("Asia/Tokyo"))
    assert rows_of(world.client)[0].next_attempt_at == tokyo_morning
    send_due(personal, tokyo_morning)
    assert len(to(relay, "bob@acme.test")) == 1
