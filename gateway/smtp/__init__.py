"""The SMTP side of the gateway: receives replies at reply+TOKEN@REPLY_DOMAIN and answers only after they
are stored.

protocol.py   GatewaySMTP: aiosmtpd's protocol with our limits, wording and DATA reader
handler.py    GatewayHandler: the RCPT and DATA hooks; DATA runs gateway/inbound/pipeline.py
committer.py  the group commit: several mails per transaction, each answered after the commit
threads.py    where work runs (event loop or WorkerThreads), and Gate: what a listener has under way
listener.py   Gateway: one listening gateway, start() and close()
serve.py      serve(): the gateway until stopped, in one process or several sharing a port
"""
