"""`hazardgw check --offline-secrets`: a site config whose ${ENV} secrets are not set on the
commissioning laptop is still checked (notify URLs: scheme and parts), the unset secrets
reported as warnings; without the option they stay errors, and `run` never accepts them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.validate import validate_text

ROOT = Path(__file__).resolve().parents[1]

SITE = """\
site: {code: S1, name: 示范化工, timezone: Asia/Shanghai}
people:
  - id: zhao
    name: 赵磊
    notify: ["dingtalk://${DINGTALK_TOKEN}/"]
    channels:
      sms: ["aliyun-sms://${ALIYUN_AK}:${ALIYUN_SECRET}@示范化工/SMS_4821/13800001111"]
      voice: ["tencent-voice://${TC_ID}:${TC_KEY}@1400987654/5566778/13800001111"]
duty:
  shifts: [{name: all, start: "00:00", end: "00:00", people: [zhao]}]
  escalation_p1:
    - {after: 0s, notify: [on_duty], channels: [notify, sms]}
    - {after: 3m, notify: [on_duty], channels: [voice]}
notification: {ack_secret: "${ACK_SECRET}"}
api: {public_url: "https://gw.example.cn", listen: "127.0.0.1:${API_PORT}"}
store: {path: /tmp/hazardgw-offline-test}
"""
UNSET = ["ACK_SECRET", "ALIYUN_AK", "ALIYUN_SECRET", "API_PORT", "DINGTALK_TOKEN", "TC_ID", "TC_KEY"]


def test_unset_secrets_are_errors_without_the_option() -> None:
    v = validate_text(SITE, "site.yaml", env={})
    assert v.config is None
    unset = [e.message for e in v.errors if e.message.startswith("environment variable")]
    assert sorted(m.split()[2] for m in unset) == UNSET
    assert all(m.endswith("is not set") for m in unset)


def test_offline_secrets_checks_the_rest_and_warns() -> None:
    v = validate_text(SITE, "site.yaml", env={}, offline_secrets=True)
    assert v.errors == [] and v.config is not None
    assert v.unset == UNSET
    warnings = v.format_warnings()
    assert "site.yaml:7: people[0].channels.sms[0]: environment variable ALIYUN_SECRET is not set: checked with a " \
        "placeholder (--offline-secrets)" in warnings
    # a value whose check needs the real secret is not judged, and says so
    assert any(w.startswith("site.yaml:15: api.listen: not checked: depends on unset ${API_PORT}: ")
               for w in warnings), warnings


def test_offline_secrets_still_finds_broken_urls() -> None:
    broken = SITE.replace("/SMS_4821/13800001111", "/SMS_4821").replace("tencent-voice://", "tencentvoise://")
    v = validate_text(broken, "site.yaml", env={}, offline_secrets=True)
    assert v.config is None
    assert v.format_errors() == [
        "site.yaml:7: people[0].channels.sms[0]: aliyun-sms://****: aliyun-sms: no phone number after the template "
        "code (person zhao)",
        "site.yaml:8: people[0].channels.voice[0]: unknown scheme tencentvoise:// (did you mean tencentvoice://?): "
        "apprise 2.2.0 has no such service (person zhao)",
    ]


def test_cli_check_offline_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(SITE, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin"}

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "check", "-c", str(cfg), *extra],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)

    r = check()
    assert r.returncode == 2 and "error: " in r.stderr and "environment variable ALIYUN_SECRET is not set" in r.stderr
    r = check("--offline-secrets")
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stderr and "ALIYUN_SECRET is not set: checked with a placeholder" in r.stderr
    assert "OK: site S1" in r.stdout


def test_the_readme_channel_example_is_a_valid_config() -> None:
    """README.md "Duty phones": the example (secrets unset) passes check --offline-secrets."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Duty phones", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    text = (
        "site: {code: S1, name: 示范化工}\n"
        "hazard_sources: [{code: HS-1, name: 液氯储罐区, grade: 2, responsible: {principal: wang}}]\n"
        + example.replace("duty:\n", 'duty:\n  shifts: [{name: all, start: "00:00", end: "00:00", people: [zhao]}]\n')
        + 'api: {public_url: "https://gw.example.cn"}\nstore: {path: /tmp/hazardgw-readme-example}\n'
    )
    v = validate_text(text, "readme.yaml", env={}, offline_secrets=True)
    assert v.format_errors() == []
    assert v.config is not None
    assert v.config.people[0].group("sms")[1].startswith("tencent-sms://")
    assert not [w for w in v.format_warnings() if "not set" not in w], v.format_warnings()
