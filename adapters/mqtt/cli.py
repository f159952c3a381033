"""``hazardgw probe mqtt``: listen to a broker for a while, for commissioning (read-only).

Subscribes to a topic filter for ``--seconds`` and prints, per topic, the message count and
rate, a sample payload, and the JSON paths of its numeric leaves as ready-to-paste
``subscriptions:`` entries (tag names are placeholders to rename). Never publishes. Exit 0
when messages arrived, 1 (one line on stderr) when the broker cannot be reached or nothing
arrived, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_LEAVES = 50  # numeric leaves listed per topic
MAX_LIST_ITEMS = 5  # list elements walked per list
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class TopicStats:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    sample: bytes = b""
    leaves: dict[str, float] = field(default_factory=dict)
    not_json: bool = False


def json_leaves(value: Any, path: str = "$") -> Iterator[tuple[str, float]]:
    """(JSON path, number) of every numeric leaf, in the path syntax of MQTT points."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield path, float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            sub = f"{path}.{key}" if _SIMPLE_KEY.match(key) else f"{path}[{json.dumps(key)}]"
            yield from json_leaves(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value[:MAX_LIST_ITEMS]):
            yield from json_leaves(v, f"{path}[{i}]")


def placeholder_tag(topic: str, path: str) -> str:
    last = [p for p in topic.split("/") if p][-1:] or ["topic"]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{last[0]}.{path.removeprefix('$.').removeprefix('$')}")
    return name.strip("._") or "TAG"


def report(stats: dict[str, TopicStats], seconds: float) -> list[str]:
    out: list[str] = []
    for topic in sorted(stats):
        s = stats[topic]
        rate = s.count / seconds if seconds > 0 else 0.0
        out.append(f"{topic}: {s.count} message(s), {rate:.2f}/s")
        sample = s.sample[:200].decode("utf-8", errors="replace")
        out.append(f"  sample: {sample}{' ...' if len(s.sample) > 200 else ''}")
        if s.not_json or not s.leaves:
            out.append("  no numeric JSON leaves" + (" (payload is not JSON)" if s.not_json else ""))
            continue
        out.append("  points (paste under subscriptions:, rename the tags):")
        out.append(f"    - topic: {json.dumps(topic, ensure_ascii=False)}")
        out.append("      format: json")
        out.append("      points:")
        for path in list(s.leaves)[:MAX_LEAVES]:
            out.append(f"        - {{tag: {placeholder_tag(topic, path)}, path: {json.dumps(path)}}}")
    return out


async def _listen(args: argparse.Namespace) -> int:
    import aiomqtt

    u = urlsplit(args.url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        print(f"error: {args.url!r}: use mqtt://host:1883 or mqtts://host:8883", file=sys.stderr)
        return EXIT_USAGE
    if args.seconds <= 0:
        print("error: --seconds must be > 0", file=sys.stderr)
        return EXIT_USAGE
    password = os.environ.get(args.password_env) if args.password_env else None
    tls = None
    if u.scheme == "mqtts":
        import ssl

        tls = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
    stats: dict[str, TopicStats] = {}
    started = time.monotonic()
    try:
        async with aiomqtt.Client(
            u.hostname, port=u.port or (8883 if tls else 1883), username=args.username, password=password,
            tls_context=tls, timeout=args.connect_timeout,
        ) as client:
            await client.subscribe(args.topic, qos=0)
            started = time.monotonic()
            try:
                async with asyncio.timeout(args.seconds):
                    async for msg in client.messages:
                        now = time.monotonic()
                        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                        s = stats.setdefault(str(msg.topic), TopicStats(first=now))
                        s.count += 1
                        s.last = now
                        if s.count == 1:
                            s.sample = payload[:4096]
                            try:
                                s.leaves = dict(json_leaves(json.loads(payload)))
                            except (ValueError, UnicodeDecodeError):
                                s.not_json = True
            except TimeoutError:
                pass
    except aiomqtt.MqttError as e:
        print(f"error: cannot connect to {args.url}: {e}", file=sys.stderr)
        return EXIT_FAILED
    elapsed = time.monotonic() - started
    if not stats:
        print(f"error: no message on {args.topic!r} at {args.url} within {args.seconds:g} s", file=sys.stderr)
        return EXIT_FAILED
    print(f"{sum(s.count for s in stats.values())} message(s) on {len(stats)} topic(s) in {elapsed:.1f} s")
    print("\n".join(report(stats, elapsed)))
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_listen(args))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 probe: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = probe.add_parser("mqtt", help="listen to a topic filter and print topics, rates and JSON paths (read-only)")
    p.add_argument("url", help="mqtt://host:1883 or mqtts://host:8883")
    p.add_argument("--topic", default="#", help="topic filter to subscribe to (default #)")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to listen")
    p.add_argument("--username", default=None)
    p.add_argument("--password-env", default=None, help="name of the environment variable holding the password")
    p.add_argument("--ca", default=None, help="CA file for mqtts://")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_probe)
