"""What a site does not use is not loaded (issue 23, memory): apprise and its plugins only with
the first push or URL check, cryptography only where certificates are read or made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SITE = """
site: {code: LAZY, name: lazy}
sources:
  - {id: m, type: mqtt, url: "mqtt://127.0.0.1:1", subscriptions: [{topic: t/bulk, format: native}]}
tags:
  - {id: TT-1, kind: temperature, unit: "°C", stale_after: 10s, alarms: {hh: {limit: 95, priority: 1}}}
api: {enabled: false}
store: {path: STORE}
"""

PEOPLE = """
people:
  - {id: zhao, name: Zhao, notify: ["json://127.0.0.1:1/duty"]}
duty:
  shifts: [{name: all, start: "00:00", end: "00:00", people: [zhao]}]
  escalation: [{after: 0s, notify: [on_duty]}]
"""

PROBE = """
import asyncio, json, sys
from gateway.runner import trim_heap
from gateway.supervisor import Gateway
from gateway.validate import validate_text
from adapters.mqtt import adapter  # its TLS contexts (gateway/core/tls.py) need only ssl

res = validate_text(sys.stdin.read())
assert res.config is not None, res.format_errors()

async def main() -> None:
    gw = Gateway(res.config)
    await gw.start()
    trim_heap()
    await gw.stop()

asyncio.run(main())
print(json.dumps({m: m in sys.modules for m in ("apprise", "requests", "cryptography", "alerting.notify.providers")}))
"""


def loaded(site: str) -> dict[str, bool]:
    p = subprocess.run([sys.executable, "-c", PROBE], input=site, capture_output=True, text=True, cwd=ROOT,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    result: dict[str, bool] = json.loads(p.stdout.strip().splitlines()[-1])
    return result


def test_a_site_without_people_never_loads_apprise_or_cryptography(tmp_path: Path) -> None:
    got = loaded(SITE.replace("STORE", str(tmp_path / "store")))
    assert got == {"apprise": False, "requests": False, "cryptography": False, "alerting.notify.providers": False}


def test_a_site_with_people_loads_apprise_and_the_provider_schemes(tmp_path: Path) -> None:
    got = loaded(SITE.replace("STORE", str(tmp_path / "store")) + PEOPLE)
    assert got["apprise"] and got["alerting.notify.providers"]


def test_provider_schemes_known_without_apprise_are_the_plugins() -> None:
    from alerting.notify import providers
    from alerting.notify.channels import PROVIDER_SCHEMES, apprise_module, is_provider

    assert set(providers.PLUGINS) == PROVIDER_SCHEMES
    assert is_provider("ALIYUN-SMS://x") and not is_provider("json://127.0.0.1/x") and not is_provider("nourl")
    mgr = apprise_module().manager_plugins.NotificationManager()  # loading apprise registers the schemes
    assert all(c.secure_protocol in mgr for c in providers.PLUGINS.values())
