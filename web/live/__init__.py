"""Live updates: each open thread page follows its thread's new messages over Server-Sent Events.

- views.py: the Flask view that authorises a stream exactly as a page is authorised.
- stream.py: the stream itself, served by the live server's event loop (web/server.py); holds no thread.
- hub.py: the process's streams, their caps, and one shared read per thread and viewer per change.
- reads.py: the reads (through the visibility rule), the reader threads, the rendered-event cache.
- wakeups.py: what wakes the hub: PostgreSQL LISTEN/NOTIFY, this process's commits, other processes'
  signals on a Unix datagram socket (SQLite) and, as a backstop, a cheap poll (SQLite).

The database is the bus: whichever process posted (web, portal, CLI, gateway), its ThreadEvent row is
committed with the message and every web process reads the table. A stream ends after
live_stream_seconds; the browser's EventSource reconnects with Last-Event-ID and resumes where it was.
"""
