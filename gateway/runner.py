"""``hazardgw run``: one gateway process with signals, systemd notification and hot reload.

* SIGINT / SIGTERM: stop cleanly (sources first, then the pipeline drains and sinks flush).
* SIGHUP: re-read the config file. A valid config is applied by :meth:`Gateway.reload`
  (unaffected sources keep running without a gap); an invalid one is rejected with all
  its errors logged, and the running config stays.
* Under systemd: READY=1 after start, WATCHDOG=1 from the event loop, RELOADING=1 around
  reloads, STOPPING=1 on shutdown.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway.core import fds
from gateway.sdnotify import LoopWatchdog, SdNotify
from gateway.supervisor import Gateway
from gateway.validate import Validation, validate_file

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.001  # s; sys.setswitchinterval for the gateway process
# gc.set_threshold for the gateway process: a young-generation collection after 10,000 net
# allocations of container objects instead of Python's 700. Readings are tuples that the
# collector tracks, and a batch of 5,000 lives for one dispatch: at 700 the collector ran
# every few hundred readings, walking the batches still alive (issue 23: 0.15 µs of CPU per
# reading, 6 % of the MQTT -> InfluxDB path). Memory: at most ~10,000 more young objects.
GC_THRESHOLD = (10_000, 10, 10)


def log_waivers(result: Validation) -> None:
    """Set points a tag runs with against GB/T 50493, with the reason given: logged at every
    start and reload so the departure from the standard stays visible."""
    for p in result.waivers:
        log.warning("standards waiver: %s", p.format(result.filename))


async def reload_from_file(gw: Gateway, path: Path, sd: SdNotify, env: Mapping[str, str] | None = None) -> bool:
    """Apply the config at ``path`` if it validates (the same decision as ``hazardgw check``);
    True when applied."""
    result = validate_file(path, env)
    if result.config is None:
        log.error("reload rejected: %s has %d error(s); the running config stays", path, len(result.errors))
        for line in result.format_errors():
            log.error("  %s", line)
        sd.notify("STATUS=reload rejected: config has errors")
        return False
    log_waivers(result)
    sd.notify("RELOADING=1", "STATUS=reloading")
    try:
        changes = await gw.reload(result.config)
    finally:
        sd.notify("READY=1", "STATUS=running")
    log.info("config reloaded from %s: %s", path, changes or "no changes")
    trim_heap()
    return True


def settle_collector() -> None:
    """Once the gateway has started: what exists now (modules, config, components, the API
    app) lives as long as the process, so it goes out of the collector's way, and a full
    collection (triggered by whatever allocates: API connections, bursts of readings) does not
    stall the loop for the time it takes to walk all of it (measured: 0.6 s with 500 tags and a
    connection flood); then the young generation's threshold (:data:`GC_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op where the
    C library has none). Validating and starting a site leaves megabytes of freed temporaries
    (the YAML, pydantic's validation) spread through the heap: 8 MB of RSS with 5,000 tags
    (issue 23, bench/memory.py). Called once after start and after each reload."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


async def run_gateway(path: Path, stop: asyncio.Event | None = None, env: Mapping[str, str] | None = None) -> int:
    result = validate_file(path, env)
    if result.config is None:
        log.error("%s has %d error(s); not starting (hazardgw check -c %s lists the same)",
                  path, len(result.errors), path)
        for line in result.format_errors():
            log.error("  %s", line)
        return 2
    log_waivers(result)
    stop = stop or asyncio.Event()
    sd = SdNotify(env)
    loop = asyncio.get_running_loop()
    reloads: asyncio.Queue[None] = asyncio.Queue(maxsize=1)  # coalesces SIGHUP bursts

    def on_hup() -> None:
        if reloads.empty():
            reloads.put_nowait(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    # threads that compute (the API's, workers encoding big responses) hand the interpreter
    # lock back to the gateway's loop after 1 ms instead of Python's default 5 ms (README "Security")
    sys.setswitchinterval(SWITCH_INTERVAL)
    before, after = fds.raise_nofile_limit()  # sockets and files; the API takes only its share (README "Security")
    if after != before:
        log.info("RLIMIT_NOFILE raised from %d to %d", before, after)
    gw = Gateway(result.config)
    watchdog = LoopWatchdog(sd, registry=gw.metrics.registry)
    gw.extra_health[watchdog.name] = watchdog.health
    try:
        await gw.start()
        settle_collector()
        trim_heap()
        await watchdog.start()
        sd.notify("READY=1", f"STATUS=running: {len(gw.sources)} sources, {len(result.config.tags)} tags")
        stop_wait = asyncio.create_task(stop.wait())
        while not stop.is_set():
            hup = asyncio.create_task(reloads.get())
            await asyncio.wait({stop_wait, hup}, return_when=asyncio.FIRST_COMPLETED)
            if hup.done():
                try:
                    await reload_from_file(gw, path, sd, env)
                except Exception:
                    log.exception("reload failed; the gateway keeps running with what it has")
            else:
                hup.cancel()
        sd.notify("STOPPING=1", "STATUS=stopping")
    finally:
        await watchdog.stop()
        await gw.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        sd.close()
    return 0
