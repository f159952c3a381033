"""Channel plans per priority: a priority-1 alarm reaches chat and SMS at once, a voice call
after 3 minutes when nobody acknowledged it, then the 包保 principal by voice; an acknowledge
stops the voice steps. Real alarm engine, real HTTP: chat on a local webhook receiver, SMS and
voice on the providers' stand-ins (signatures verified); escalation time on a fake clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for
from test_notify_support import Clock, Harness, Receiver, site_config

from alerting.notify.escalation import plan
from alerting.notify.store import PushRow
from devkit.standins import AliyunStandin, TencentStandin
from gateway.core.config import EscalationStep, Person
from gateway.validate import validate_text

AK, AK_SECRET = "LTAI5tHazardGw0002", "AliSecretForPlans0123456789ab"
SID, SKEY = "AKIDhazardgwPlans0002", "TencentKeyForPlans0123456789"
ZHAO, WANG = "13800001111", "13900002222"

P1_PLAN = [
    {"after": "0s", "notify": ["on_duty"], "channels": ["notify", "sms"]},
    {"after": "3m", "notify": ["on_duty"], "channels": ["voice"]},
    {"after": "6m", "notify": ["principal"], "channels": ["voice"]},
]


@pytest.fixture
async def rx() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def ali() -> AsyncIterator[AliyunStandin]:
    async with AliyunStandin({AK: AK_SECRET}) as s:
        yield s


@pytest.fixture
async def tc() -> AsyncIterator[TencentStandin]:
    async with TencentStandin({SID: SKEY}) as s:
        yield s


def plan_config(rx: Receiver, ali: AliyunStandin, tc: TencentStandin, store: Path) -> Any:
    duty = {
        "shifts": [
            {"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]},
            {"name": "night", "start": "20:00", "end": "08:00", "people": ["sun"]},
        ],
        "escalation": [{"after": "0s", "notify": ["on_duty"]}, {"after": "5m", "notify": ["operational"]}],
        "escalation_p1": P1_PLAN,
    }
    channels = {
        "zhao": {
            "sms": [f"aliyun-sms://{AK}:{AK_SECRET}@示范化工/SMS_4821/{ZHAO}?endpoint={ali.url}"],
            # the first voice URL is refused by Alibaba Cloud (flow control): failover to Tencent
            "voice": [
                f"aliyun-voice://{AK}:{AK_SECRET}@057188880000/TTS_7731/{ZHAO}?endpoint={ali.url}",
                f"tencent-voice://{SID}:{SKEY}@1400987654/5566778/{ZHAO}?endpoint={tc.url}",
            ],
        },
        "wang": {"voice": [f"tencent-voice://{SID}:{SKEY}@1400987654/5566778/{WANG}?endpoint={tc.url}"]},
    }
    return site_config(rx, store, duty=duty, channels=channels)


async def test_p1_chat_and_sms_at_once_then_voice_then_the_principal(
    rx: Receiver, ali: AliyunStandin, tc: TencentStandin, tmp_path: Path
) -> None:
    clock = Clock("2026-03-02 10:00")  # day shift: zhao
    h = await Harness(plan_config(rx, ali, tc, tmp_path), clock).start()
    try:
        h.feed("GT-101", 2.6)  # HH (priority 1) and H (priority 2)
        await rx.wait("/zhao", 2)  # chat: HH and H
        (sms,) = await async_wait_for(lambda: ali.by_action("SendSms"))
        assert sms.phones == [ZHAO] and sms.code == "OK"
        assert sms.params["hs"] == "液氯储罐区" and sms.params["tag"] == "GT-101" and sms.params["value"] == "2.6 ppm"
        assert sms.params["priority"] == "一级(紧急)" and sms.params["time"] == "3月2日 10:00:00"
        await async_wait_for(lambda: len(h.notified("sent", "zhao")) == 3)  # HH chat + HH sms + H chat
        channels = sorted(r.channel or "" for r in h.notified("sent", "zhao"))
        assert channels[0].startswith("aliyun-sms://LTAI****02:****@示范化工/SMS_4821/138****1111")
        assert ali.by_action("SingleCallByTts") == [] and tc.calls == []

        clock.advance(179.0)
        await h.settle()
        assert ali.by_action("SingleCallByTts") == [] and tc.calls == []  # not yet
        ali.answer[ZHAO] = "isv.BUSINESS_LIMIT_CONTROL"
        clock.advance(1.0)  # 3 minutes unacknowledged: voice call to the on-duty person
        await h.settle()
        (call,) = await async_wait_for(lambda: tc.by_action("SendTtsVoice"))
        assert call.phones == ["+86" + ZHAO]
        assert [c.code for c in ali.by_action("SingleCallByTts")] == ["isv.BUSINESS_LIMIT_CONTROL"]
        assert h.metric("hazardgw_notify_provider_results_total", {"scheme": "aliyun-voice", "result": "quota"}) == 1
        assert h.metric("hazardgw_notify_provider_results_total", {"scheme": "tencent-voice", "result": "ok"}) == 1
        assert h.metric("hazardgw_notify_failovers_total") == 1
        occ = h.engine.get("GT-101/hh").occurrence
        deliveries = await h.deliveries(occ)
        assert sorted((d["step"], d["outcome"], (d["channel"] or "").split("://")[0]) for d in deliveries) == [
            (0, "sent", "aliyun-sms"), (0, "sent", "json"), (1, "failed", "aliyun-voice"), (1, "sent", "tencent-voice"),
        ]
        assert len(rx.on("/zhao")) == 2  # the voice step sends nothing to chat

        clock.advance(180.0)  # 6 minutes: the principal (wang) by voice
        await h.settle()
        await async_wait_for(lambda: len(tc.by_action("SendTtsVoice")) == 2)
        assert tc.by_action("SendTtsVoice")[1].phones == ["+86" + WANG]
        assert rx.on("/wang") == []  # voice only
        escalated = [(r.step, r.recipients) for r in h.records if r.event == "escalated" and r.priority == 1]
        assert escalated == [(1, ("zhao",)), (2, ("wang",))]
    finally:
        await h.stop()


async def test_a_step_on_a_channel_the_person_lacks_goes_out_on_notify(
    rx: Receiver, ali: AliyunStandin, tc: TencentStandin, tmp_path: Path
) -> None:
    """The 3-minute voice step for someone without a voice channel (check only warns about it)
    reaches them on notify, and the escalation goes on (that path once called a method that
    no longer existed: the step raised every tick and nobody was notified)."""
    clock = Clock("2026-03-02 21:00")  # night shift: sun, who has a notify URL only
    h = await Harness(plan_config(rx, ali, tc, tmp_path), clock).start()
    try:
        h.feed("GT-101", 2.6)  # HH (priority 1) and H (priority 2)
        await rx.wait("/sun", 2)  # step 0 of both on chat (sun has notify, one of the HH step's groups)
        assert h.metric("hazardgw_notify_fallbacks_total") == 0
        clock.advance(180.0)
        await h.settle()
        await rx.wait("/sun", 3)  # the voice step, on notify
        assert h.metric("hazardgw_notify_fallbacks_total") == 1
        escalated = [(r.step, r.recipients) for r in h.records if r.event == "escalated" and r.priority == 1]
        assert escalated == [(1, ("sun",))]
        assert ali.by_action("SendSms") == [] and ali.by_action("SingleCallByTts") == [] and tc.calls == []
    finally:
        await h.stop()


async def test_sms_parameters_that_cannot_be_built_are_logged_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A push whose stored alarm info lacks fields (a row from an older version): the SMS/voice
    parameters are left out with an error logged (the provider then refuses the push and the
    outbox fails over), not an exception out of the send path."""
    h = await Harness(site_config(None, tmp_path), Clock("2026-03-02 21:00")).start()
    try:
        broken = PushRow(key="a:1:0:0:sun:sms", kind="alarm", person="sun", priority=1, status="pending",
                         created_wall=0, next_wall=0, occurrence=1, step=0, info={"tag": "GT-101"})
        with caplog.at_level(logging.ERROR, logger="alerting.notify.notifier"):
            assert h.notifier._params(broken) is None
        assert "notify: cannot build SMS/voice parameters" in caplog.text
    finally:
        await h.stop()


async def test_acknowledge_stops_the_voice_steps(
    rx: Receiver, ali: AliyunStandin, tc: TencentStandin, tmp_path: Path
) -> None:
    clock = Clock("2026-03-02 10:00")
    h = await Harness(plan_config(rx, ali, tc, tmp_path), clock).start()
    try:
        h.feed("GT-101", 2.6)
        await async_wait_for(lambda: ali.by_action("SendSms"))
        await async_wait_for(lambda: len(h.notified("sent", "zhao")) == 3)
        clock.advance(120.0)
        await h.settle()
        h.engine.ack("GT-101/hh", "zhao", "on my way")  # from the console, 2 minutes in
        await h.settle()
        for _ in range(4):
            clock.advance(120.0)
            await h.settle()
        assert ali.by_action("SingleCallByTts") == [] and tc.by_action("SendTtsVoice") == []
        esc = await h.notifier.db.run(h.notifier.store.escalations)
        hh = next(e for e in esc if e["alarm"] == "GT-101/hh")
        assert (hh["status"], hh["next_step"], hh["reason"]) == ("stopped", 1, "acked by zhao")
    finally:
        await h.stop()


async def test_an_sms_step_survives_a_restart_without_a_second_sms(
    rx: Receiver, ali: AliyunStandin, tc: TencentStandin, tmp_path: Path
) -> None:
    """The outbox's never-twice guarantee holds per channel group: after a restart, the SMS
    and chat pushes of step 0 are not sent again; the voice step due during the outage is."""
    clock = Clock("2026-03-02 10:00")
    cfg = plan_config(rx, ali, tc, tmp_path)
    h = await Harness(cfg, clock).start()
    h.feed("GT-101", 2.6)
    await async_wait_for(lambda: len(h.notified("sent", "zhao")) == 3)
    await h.stop()
    clock.advance(200.0)  # the gateway was down when the voice step became due
    h2 = Harness(cfg, clock)
    await h2.start()
    try:
        await h2.settle()
        await async_wait_for(lambda: tc.by_action("SendTtsVoice") or ali.by_action("SingleCallByTts"))
        await h2.settle()
        assert len(ali.by_action("SendSms")) == 1 and len(rx.on("/zhao")) == 2
        keys = [p["key"] for p in await h2.notifier.db.run(h2.notifier.store.pushes)]
        occ = h2.engine.get("GT-101/hh").occurrence
        mine = sorted(k.split(":", 3)[3] for k in keys if k.startswith(f"a:{occ}:"))
        assert mine == ["0:zhao", "0:zhao:sms", "1:zhao:voice"]
    finally:
        await h2.stop()


# ----------------------------------------------------------------------------- plan() and the config


def test_plan_fires_groups_together_falls_back_and_coalesces() -> None:
    people = {
        "zhao": Person(id="zhao", name="Z", notify=["json://a/z"], channels={"sms": ["json://a/zs"]}),
        "li": Person(id="li", name="L", notify=["json://a/l"]),
    }
    steps = [EscalationStep(after=0, notify=["on_duty"], channels=["notify", "sms"]),
             EscalationStep(after=60, notify=["on_duty"], channels=["sms"])]
    p = plan([(0, ["zhao", "li"])], steps, people)
    assert p.pushes == [(0, "zhao", "notify"), (0, "zhao", "sms"), (0, "li", "notify")]
    assert p.fallbacks == []  # li has notify, one of the step's groups
    p = plan([(1, ["li"])], steps, people)
    assert p.pushes == [(1, "li", "notify")] and p.fallbacks == [(1, "li", ("sms",))]
    # both steps due at once (after a restart): one sms push, for the latest step
    p = plan([(0, ["zhao"]), (1, ["zhao"])], steps, people)
    assert p.pushes == [(0, "zhao", "notify"), (1, "zhao", "sms")]
    assert EscalationStep(after=0, notify=["x"]).groups == ("notify",)


def test_config_keys_and_their_checks(tmp_path: Path) -> None:
    text = f"""
site: {{code: S1, name: 示范, timezone: Asia/Shanghai}}
people:
  - id: zhao
    name: 赵磊
    notify: ["json://127.0.0.1:9/zhao"]
    channels:
      sms: ["aliyun-sms://{AK}:{AK_SECRET}@示范化工/SMS_1/{ZHAO}"]
  - id: wang
    name: 王军
    notify: ["json://127.0.0.1:9/wang"]
hazard_sources: [{{code: HS-1, name: 液氯, grade: 2, responsible: {{principal: wang}}}}]
duty:
  shifts: [{{name: all, start: "00:00", end: "00:00", people: [zhao]}}]
  escalation_p1:
    - {{after: 0s, notify: [on_duty], channels: [notify, sms]}}
    - {{after: 3m, notify: [principal], channels: [voice, smss]}}
api: {{public_url: "https://gw.example.cn"}}
store: {{path: {tmp_path}}}
"""
    v = validate_text(text, "site.yaml", env={})
    errors = v.format_errors()
    assert errors == [
        "site.yaml:17: duty.escalation_p1[1].channels[0]: unknown channel group 'voice': use notify or a group "
        "of people[].channels (sms)",
        "site.yaml:17: duty.escalation_p1[1].channels[1]: unknown channel group 'smss' (did you mean 'sms'?): use "
        "notify or a group of people[].channels (sms)",
    ]
    good = text.replace("[voice, smss]", "[sms]")
    v = validate_text(good, "site.yaml", env={})
    assert v.config is not None, v.format_errors()
    assert "site.yaml:17: duty.escalation_p1[1].channels: person wang has none of the channels sms: this step " \
        "reaches them on notify" in v.format_warnings()
    bad = good.replace("channels:\n      sms:", "channels:\n      notify:")
    errors = validate_text(bad, "s", env={}).format_errors()
    assert any("'notify' is the name of the person's notify list" in e for e in errors)
