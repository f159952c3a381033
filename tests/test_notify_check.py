"""``check_notification``: the notification/duty findings for ``hazardgw check``."""

from __future__ import annotations

from pathlib import Path

from test_notify_support import local_ns, site_config

from alerting.notify import check_notification, mask_url
from alerting.notify.channels import redact, url_secrets
from gateway.core.problems import Finding, format_path


def _split(findings: list[Finding]) -> tuple[list[str], list[str]]:
    errors = [f"{format_path(f.path)}: {f.message}" for f in findings if f.severity == "error"]
    return errors, [f"{format_path(f.path)}: {f.message}" for f in findings if f.severity != "error"]


def test_a_good_config_has_no_findings(tmp_path: Path) -> None:
    cfg = site_config(
        None, tmp_path, urls={p: [f"json://127.0.0.1:9/{p}"] for p in ("zhao", "sun", "li", "wang", "chen")}
    )
    errors, warnings = _split(check_notification(cfg, local_ns("2026-03-02 00:00")))
    assert errors == []
    assert warnings == []


def test_findings(tmp_path: Path) -> None:
    urls = {
        "zhao": ["nosuchschema://x/y"],
        "sun": [],
        "li": ["json://127.0.0.1:9/li"],
        "wang": ["json://a:9/w"],
        "chen": ["json://127.0.0.1:9/c"],
    }
    duty = {
        "shifts": [{"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]}],
        "escalation_p1": [{"after": "1m", "notify": ["on_duty"]}],
        "escalation": [{"after": "0s", "notify": ["on_duty", "sun"]}],
    }
    cfg = site_config(None, tmp_path, urls=urls, duty=duty)
    cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"public_url": None, "listen": "0.0.0.0:8080"})})
    errors, warnings = _split(check_notification(cfg, local_ns("2026-03-02 00:00")))
    assert errors == [
        "people[0].notify[0]: unknown scheme nosuchschema://: apprise 2.2.0 has no such service (person zhao)"
    ]
    text = "\n".join(warnings)
    assert "person sun is on the roster or an escalation target but has no notify URL" in text
    assert "nobody on duty Mon 2026-03-02 00:00 - Mon 2026-03-02 08:00" in text
    assert "ack links use http://0.0.0.0:8080, which a phone cannot open" in text
    assert "priority-1 alarms reach nobody for 60 s" in text


def test_masking_and_redaction() -> None:
    url = "dingtalk://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/"
    shown = mask_url(url)
    assert shown.startswith("dingtalk://") and "0123456789abcdef0123" not in shown
    s = url_secrets("json://u:pw123456@127.0.0.1:8080/hooks/Abc123xyz9?:k=secretvalue")
    assert {"pw123456", "Abc123xyz9", "secretvalue"} <= s and "127.0.0.1:8080" not in s
    assert redact("POST /hooks/Abc123xyz9 as u:pw123456", s) == "POST /****/**** as u:****"
