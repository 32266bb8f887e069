"""serve(): the SMTP gateway until told to stop, in one process or several sharing one port.

Python runs one core's worth of a process's work, so `serve(processes=N)` starts N-1 more gateway
processes (spawned) on the port the first one got; the kernel spreads connections over them
(SO_REUSEPORT). They stop with the first (SIGTERM: they finish their mails).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.process
import os
import signal

from config import Settings
from gateway.smtp.listener import Gateway
from gateway.smtp.threads import GRACE_SECONDS

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event, processes: int | None = None) -> None:
    """Serves SMTP on SMTP_HOST:SMTP_PORT until stop is set, then closes cleanly and returns.

    processes: how many gateway processes share the port. None: settings.smtp_processes; 0: one per CPU.
    This process is the first; the others are started here and stopped with it.
    """
    count = process_count(settings, processes)
    gateway = Gateway(settings)
    await gateway.start()
    others: list[multiprocessing.process.BaseProcess] = []
    try:
        if count > 1:
            # The others listen on the port this one got (it may have been 0: any free port).
            shared = settings.replace(smtp_port=gateway.port)
            others = [await asyncio.to_thread(_start_process, shared) for _ in range(count - 1)]
            log.info("SMTP gateway: %d processes share %s:%s", count, gateway.host, gateway.port)
        await stop.wait()
    finally:
        for process in others:
            if process.is_alive():
                process.terminate()
        await gateway.close()
        for process in others:
            await asyncio.to_thread(process.join, settings.smtp_processing_timeout + GRACE_SECONDS + 5)
            if process.is_alive():
                process.kill()


def process_count(settings: Settings, processes: int | None = None) -> int:
    if processes is None:
        processes = settings.smtp_processes
    if processes <= 0:
        processes = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, processes)


def _start_process(settings: Settings) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(
        target=_process_main, args=(settings,), name="workrate-smtp", daemon=True)
    process.start()
    return process


def _process_main(settings: Settings) -> None:
    """One more gateway process (spawned by serve): the same gateway, until SIGTERM or SIGINT."""
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop, processes=1)

    asyncio.run(main())
