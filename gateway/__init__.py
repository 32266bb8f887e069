"""The mail side of WorkRate Messages.

Inbound: an aiosmtpd server (gateway/smtp/) receives replies at reply+TOKEN@REPLY_DOMAIN and runs
each through the pipeline in gateway/inbound/ (parse, authenticate, drop automatic mail, extract the
reply, collect attachments, store), answering 250 only after the result is committed.
Outbound: a worker (gateway/outbound/) drains the OutboxEmail rows that posting wrote, renders the
notifications from templates/email/ and hands them to the relay, with retries.
"""
