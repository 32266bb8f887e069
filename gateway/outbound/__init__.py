"""Outgoing mail: outbox → worker → relay.

storage/posting.py writes OutboxEmail rows in the same transaction as each message; worker.py claims the
due ones (storage/outbox.py), render.py turns them into mail from templates/email/ (asking the visibility
rule again), dkim.py signs it when a key is configured, and transport.py hands it to the relay over
aiosmtplib (or writes an .eml file when no relay is configured). unsubscribe.py signs and applies the
one-click List-Unsubscribe links; login_links.py renders and queues sign-in link emails.
"""
