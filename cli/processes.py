"""Runs the roles of WorkRate (SMTP gateway, web server, outgoing-mail worker) in one process.

`workrate run` runs all three; `workrate smtp|web|worker` one each. The gateway and the worker share
one asyncio loop in the main thread; the web server runs its own thread pool. SIGINT and SIGTERM stop
everything cleanly: listeners close, in-flight work finishes, then the process exits.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from config import Settings

log = logging.getLogger(__name__)


def run_roles(settings: Settings, *, smtp: bool = False, web: bool = False, worker: bool = False) -> None:
    asyncio.run(_run(settings, smtp=smtp, web=web, worker=worker))


async def _run(settings: Settings, *, smtp: bool, web: bool, worker: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    web_server = None
    if web:
        from web.server import WebServer

        web_server = WebServer(settings)
        web_server.start()
        log.info("web app listening on http://%s:%s (open %s)", settings.web_host, settings.web_port,
                 settings.effective_base_url)
    tasks = []
    if smtp:
        from gateway.smtp.serve import serve

        tasks.append(asyncio.create_task(serve(settings, stop), name="smtp"))
    if worker:
        from gateway.outbound.worker import OutboxWorker

        tasks.append(asyncio.create_task(OutboxWorker(settings).run(stop), name="worker"))
    try:
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in done:
            if task is not waiter and task.exception():
                log.error("%s stopped: %s", task.get_name(), task.exception())
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if web_server is not None:
            await asyncio.to_thread(web_server.stop)
        log.info("stopped")
