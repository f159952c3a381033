"""SMS and voice channels (alerting/notify/providers/) against the local stand-ins (devkit/standins/),
which verify every signature with the providers' own signers; the Tencent SDK clients are run
against the stand-in too, so the stand-in is checked against an implementation we did not write."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign
from tencentcloud.sms.v20210111 import models as sms_models
from tencentcloud.sms.v20210111.sms_client import SmsClient
from tencentcloud.vms.v20200902 import models as vms_models
from tencentcloud.vms.v20200902.vms_client import VmsClient

from alerting.notify import providers
from alerting.notify.channels import Channels, check_url, mask_url, url_secrets
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.providers import aliyun, tencent
from devkit.standins import AliyunStandin, TencentStandin
from gateway.core.metrics import Metrics

AK, AK_SECRET = "LTAI5tHazardGw0001", "AliSecretForTests0123456789abc"
SID, SKEY = "AKIDhazardgwTestSecretId0001", "TencentSecretKeyForTests0123456"
FIELDS = {
    "site": "示范化工有限公司",
    "site_code": "91430900DEMO0001XX",
    "hs": "液氯储罐区",
    "hs_code": "HS-001",
    "tag": "GT-101",
    "tag_name": "T-101 北侧氯气探测器",
    "condition": "高高报",
    "value": "2.6 ppm",
    "limit": "2 ppm",
    "priority": "一级(紧急)",
    "time": "3月2日 10:00:05",
    "state": "报警未确认",
    "step": "0",
    "person": "赵磊",
    "link": "http://gw/ack/x",
}
SMS_VARS = {"site", "hs", "tag", "value", "limit", "priority", "time"}


@pytest.fixture
async def ali() -> AsyncIterator[AliyunStandin]:
    s = AliyunStandin({AK: AK_SECRET}, templates={"SMS_4821": SMS_VARS, "TTS_7731": SMS_VARS},
                      signs={"示范化工", "057188880000"})
    async with s:
        yield s


@pytest.fixture
async def tc() -> AsyncIterator[TencentStandin]:
    s = TencentStandin({SID: SKEY}, templates={"2233445": 7, "5566778": 7}, apps={"1400987654"})
    async with s:
        yield s


def ali_sms(s: AliyunStandin, *phones: str, secret: str = AK_SECRET, extra: str = "") -> str:
    return f"aliyun-sms://{AK}:{secret}@示范化工/SMS_4821/{'/'.join(phones)}?endpoint={s.url}{extra}"


def ali_voice(s: AliyunStandin, phone: str, extra: str = "") -> str:
    return f"aliyun-voice://{AK}:{AK_SECRET}@057188880000/TTS_7731/{phone}?endpoint={s.url}{extra}"


def tc_sms(s: TencentStandin, *phones: str, secret: str = SKEY) -> str:
    return f"tencent-sms://{SID}:{secret}@1400987654/%E7%A4%BA%E8%8C%83%E5%8C%96%E5%B7%A5/2233445/" \
        f"{'/'.join(phones)}?endpoint={s.url}"


def tc_voice(s: TencentStandin, phone: str) -> str:
    return f"tencent-voice://{SID}:{SKEY}@1400987654/5566778/{phone}?endpoint={s.url}&play_times=2"


def channels() -> tuple[Channels, Metrics]:
    m = Metrics()
    return Channels(timeout=5.0, metrics=m.group(NotifyMetrics)), m


def count(m: Metrics, scheme: str, result: str) -> float:
    v = m.registry.get_sample_value("hazardgw_notify_provider_results_total", {"scheme": scheme, "result": result})
    return 0.0 if v is None else v


# ----------------------------------------------------------------------------- signing vs the official signers


def test_acs3_signature_equals_the_official_signer() -> None:
    query = {"PhoneNumbers": "13800001234", "SignName": "示范化工", "TemplateCode": "SMS_1",
             "TemplateParam": '{"site":"示范 化工~(1)"}'}
    xacs = {"x-acs-action": "SendSms", "x-acs-version": "2017-05-25", "x-acs-date": "2026-03-02T02:00:05Z",
            "x-acs-signature-nonce": "d410180a5abf7fe235dd9b74aca91fc0"}
    headers = aliyun.sign_v3("POST", "dysmsapi.aliyuncs.com", "/", query, xacs, b"", AK, AK_SECRET)
    req = SimpleNamespace(method="POST", pathname="/", query=query,
                          headers={k: v for k, v in headers.items() if k != "authorization"})
    official = OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], AK, AK_SECRET)
    assert headers["authorization"] == official
    assert "SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version" \
        in official


def test_tc3_signature_equals_the_official_signer() -> None:
    auth, date = tencent.sign_tc3(SID, SKEY, "sms", "sms.tencentcloudapi.com", b'{"a":1}', 1772416805)
    assert date == "2026-03-02"
    import hashlib

    canonical = "POST\n/\n\ncontent-type:application/json\nhost:sms.tencentcloudapi.com\n\ncontent-type;host\n" \
        + hashlib.sha256(b'{"a":1}').hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n1772416805\n{date}/sms/tc3_request\n" + hashlib.sha256(canonical.encode()).hexdigest()
    assert auth.endswith("Signature=" + Sign.sign_tc3(SKEY, date, "sms", to_sign))
    assert auth.startswith(f"TC3-HMAC-SHA256 Credential={SID}/2026-03-02/sms/tc3_request, ")


# ----------------------------------------------------------------------------- the stand-ins vs the official SDK


async def test_tencent_sdk_clients_are_accepted_by_the_stand_in(tc: TencentStandin) -> None:
    prof = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=f"127.0.0.1:{tc.port}"))

    def sdk_sms(secret: str) -> str:
        req = sms_models.SendSmsRequest()
        req.PhoneNumberSet = ["+8613800001234"]
        req.SmsSdkAppId = "1400987654"
        req.SignName = "示范化工"
        req.TemplateId = "2233445"
        req.TemplateParamSet = ["a", "b", "c", "d", "e", "f", "g"]
        resp = SmsClient(credential.Credential(SID, secret), "ap-guangzhou", prof).SendSms(req)
        return str(resp.SendStatusSet[0].Code)

    def sdk_voice() -> str:
        req = vms_models.SendTtsVoiceRequest()
        req.TemplateId = "5566778"
        req.TemplateParamSet = ["a", "b", "c", "d", "e", "f", "g"]
        req.CalledNumber = "+8613800001234"
        req.VoiceSdkAppid = "1400987654"
        client = VmsClient(credential.Credential(SID, SKEY), "ap-guangzhou", prof)
        return str(client.SendTtsVoice(req).SendStatus.CallId)

    assert await asyncio.to_thread(sdk_sms, SKEY) == "Ok"
    assert await asyncio.to_thread(sdk_voice)
    with pytest.raises(TencentCloudSDKException) as e:
        await asyncio.to_thread(sdk_sms, "not-the-secret")
    assert e.value.code == "AuthFailure.SignatureFailure"


# ----------------------------------------------------------------------------- delivery


async def test_every_scheme_delivers_the_alarm_parameters(ali: AliyunStandin, tc: TencentStandin) -> None:
    ch, m = channels()
    for url in (ali_sms(ali, "13800001234", "13900005678"), ali_voice(ali, "13800001234"),
                tc_sms(tc, "13800001234"), tc_voice(tc, "+8613800001234")):
        res = await ch.send(url, "title", "body", "failure", params=FIELDS)
        assert res.ok, (mask_url(url), res.error)
    (sms,) = ali.by_action("SendSms")
    assert sms.phones == ["13800001234", "13900005678"] and sms.key_id == AK
    assert sms.params == {k: FIELDS[k] for k in SMS_VARS}
    assert sms.fields["SignName"] == "示范化工" and sms.fields["TemplateCode"] == "SMS_4821"
    (call,) = ali.by_action("SingleCallByTts")
    assert call.fields["CalledShowNumber"] == "057188880000" and call.params["hs"] == "液氯储罐区"
    (tsms,) = tc.by_action("SendSms")
    assert tsms.phones == ["+8613800001234"]  # a mainland number gets +86
    assert tsms.params == [
        "示范化工有限公司", "液氯储罐区", "GT-101", "2.6 ppm", "2 ppm", "一级(紧急)", "3月2日 10:00:05"
    ]
    assert tsms.fields["SignName"] == "示范化工"
    (tvoice,) = tc.by_action("SendTtsVoice")
    assert tvoice.fields["PlayTimes"] == 2 and tvoice.fields["VoiceSdkAppid"] == "1400987654"
    for scheme in providers.SCHEMES:
        assert count(m, scheme, "ok") == 1
    assert ali.rejected == [] and tc.rejected == []


async def test_params_pick_rename_and_cut(ali: AliyunStandin) -> None:
    ali.templates = {"SMS_4821": {"name", "tag", "condition"}}
    ch, _ = channels()
    url = ali_sms(ali, "13800001234", extra="&params=name:hs,tag,condition,tag_name&maxlen=6")
    res = await ch.send(url, "t", "b", params=FIELDS)
    assert res.ok, res.error
    assert ali.calls[-1].params == {"name": "液氯储罐区", "tag": "GT-101", "condition": "高高报", "tag_name": "T-101…"}


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", "quota"),
        ("isv.AMOUNT_NOT_ENOUGH", "balance"),
        ("isv.SMS_TEMPLATE_ILLEGAL", "template"),
        ("isv.MOBILE_NUMBER_ILLEGAL", "number"),
        ("isp.SYSTEM_ERROR", "provider"),
    ],
)
async def test_aliyun_error_codes_are_logged_clearly_and_counted(
    ali: AliyunStandin, code: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    ali.answer["13800001234"] = code
    ch, m = channels()
    with caplog.at_level(logging.WARNING, "alerting.notify.channels"):
        res = await ch.send(ali_sms(ali, "13800001234"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None
    assert res.error.startswith(f"{code} ({kind}: {providers.CLASSES[kind]})")
    assert "[request " in res.error
    assert count(m, "aliyun-sms", kind) == 1 and count(m, "aliyun-sms", "ok") == 0
    (line,) = [r.getMessage() for r in caplog.records]
    assert f"aliyun-sms refused the push via aliyun-sms://LTAI****01:****@示范化工/SMS_4821/138****1234: {code}" in line
    assert AK_SECRET not in line and "13800001234" not in line


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("LimitExceeded.PhoneNumberDailyLimit", "quota"),
        ("FailedOperation.InsufficientBalanceInSmsPackage", "balance"),
        ("FailedOperation.TemplateIncorrectOrUnapproved", "template"),
        ("InvalidParameterValue.IncorrectPhoneNumber", "number"),
    ],
)
async def test_tencent_error_codes_are_classified_and_counted(tc: TencentStandin, code: str, kind: str) -> None:
    tc.answer["+8613800001234"] = code
    tc.answer["+8613800005678"] = code
    ch, m = channels()
    res = await ch.send(tc_sms(tc, "13800001234"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None and res.error.startswith(f"{code} ({kind}:")
    assert "+86138****1234" in res.error
    res = await ch.send(tc_voice(tc, "+8613800005678"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None and res.error.startswith(f"{code} ({kind}:")
    assert count(m, "tencent-sms", kind) == 1 and count(m, "tencent-voice", kind) == 1


async def test_a_wrong_secret_is_an_auth_failure_without_the_secret(ali: AliyunStandin, tc: TencentStandin) -> None:
    ch, m = channels()
    res = await ch.send(ali_sms(ali, "13800001234", secret="WrongSecret0123456789"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None and res.error.startswith("SignatureDoesNotMatch (auth:")
    assert "WrongSecret0123456789" not in res.error
    res = await ch.send(tc_sms(tc, "13800001234", secret="WrongKey0123456789"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None and res.error.startswith("AuthFailure.SignatureFailure (auth:")
    assert count(m, "aliyun-sms", "auth") == 1 and count(m, "tencent-sms", "auth") == 1
    assert ali.calls == [] and tc.calls == []  # refused before any action


async def test_unreachable_endpoint_and_non_json_answers_are_http_failures(ali: AliyunStandin) -> None:
    await ali.stop()  # nothing listens on its port now
    ch, m = channels()
    res = await ch.send(ali_sms(ali, "13800001234"), "t", "b", params=FIELDS)
    assert not res.ok and res.error is not None and res.error.startswith("ConnectionError (http:")
    plugin = providers.plugin_for(ali_sms(ali, "13800001234"))
    bad = plugin.parse_response(502, b"<html>Bad Gateway</html>")
    assert (bad.ok, bad.code, bad.kind) == (False, "HTTP 502", "http")
    assert count(m, "aliyun-sms", "http") == 1


async def test_plain_apprise_sends_a_test_message(ali: AliyunStandin) -> None:
    import apprise

    ap = apprise.Apprise()
    assert ap.add(providers.apprise_url(ali_sms(ali, "13800001234")))  # aliyunsms:// for apprise itself
    ali.templates = None
    assert await ap.async_notify(body="body", title="hazardgw 测试")
    assert ali.calls[-1].params["site"] == "hazardgw 测试"


# ----------------------------------------------------------------------------- URLs: check, masking, secrets


def test_url_problems_name_the_part() -> None:
    base = f"{AK}:{AK_SECRET}"
    cases = {
        f"aliyun-sms://{base}@示范化工": "the template code (SMS_..., first path part) is missing",
        f"aliyun-sms://{base}@示范化工/SMS_1": "no phone number after the template code",
        f"aliyun-sms://{AK}@示范化工/SMS_1/13800001234": "AccessKey secret (URL password) is missing",
        f"aliyun-sms://{base}@示范化工/SMS_1/1380000abcd": "phone 138****abcd is not a phone number",
        f"aliyun-sms://{base}@示范化工/SMS_1/1380000111": "phone 138****0111: a mainland mobile number has 11 digits",
        f"aliyun-voice://{base}@0571/TTS_1/13800001234/13900001234": "exactly one phone number per URL",
        f"aliyun-voice://{base}@0571/TTS_1/13800001234?play_times=9": "play_times must be 1..3",
        f"tencent-sms://{SID}:{SKEY}@app/签名/1/13800001234": "the SdkAppId (URL host) must be digits",
        f"tencent-sms://{SID}:{SKEY}@1400987654/签名/SMS_1/13800001234": "the template id (second path part) must",
        f"tencent-voice://{SID}:{SKEY}@1400987654/1/13800001234?region=mars": "region must be one of",
        f"aliyun-sms://{base}@示范化工/SMS_1/13800001234?params=site,nosuch": "params: unknown field 'nosuch'",
        f"aliyun-sms://{base}@示范化工/SMS_1/13800001234?endpoint=ftp://x": "endpoint must be an http(s):// URL",
    }
    for url, want in cases.items():
        found = check_url(url)
        assert found is not None and found[0] == "error" and want in found[1], (url, found)
        assert AK_SECRET not in found[1] and SKEY not in found[1]
    assert check_url(f"aliyun-sms://{base}@%E7%A4%BA%E8%8C%83/SMS_1/13800001234") is None
    assert check_url(f"aliyunsms://{base}@示范化工/SMS_1/13800001234") is None  # apprise's own spelling


def test_wecom_and_unknown_schemes_get_a_clear_message() -> None:
    # a WeCom robot key (a UUID) that apprise would hand to PushPlus as a token
    sev, msg = check_url("wecom://693a91f6-7a0c-4bc4-97a0-0ec2f1fa5aaa") or ("", "")
    assert sev == "error" and "PushPlus relay" in msg and "use wecombot://KEY" in msg
    sev, msg = check_url("wecom://abcd-1234") or ("", "")  # apprise refuses it as a PushPlus token
    assert sev == "error" and "PushPlus" in msg and "token" not in msg
    sev, msg = check_url("wecom://0123456789abcdef0123456789abcdef") or ("", "")
    assert sev == "warning" and "not a WeCom group robot" in msg
    assert check_url("wecombot://693axxx6-7aoc-4bc4-97a0-0ec2sifa5aaa") is None
    sev, msg = check_url("dingtalks://abc/") or ("", "")
    assert sev == "error" and "unknown scheme dingtalks:// (did you mean dingtalk://?)" in msg
    sev, msg = check_url("dingtalk://") or ("", "")
    assert sev == "error" and "is not a valid dingtalk:// URL: An invalid DingTalk API Token" in msg
    for ok in ("dingtalk://0123456789abcdef/", "feishu://0123-4567-89ab/", "lark://abcdef0123/",
               "wechat://ww0123456789:secret@1000002/@all"):
        assert check_url(ok) is None, ok


def test_masks_and_secrets_know_the_provider_schemes() -> None:
    urls = {
        "aliyun-sms": f"aliyun-sms://{AK}:{AK_SECRET}@示范化工/SMS_4821/13800001234",
        "aliyun-voice": f"aliyun-voice://{AK}:{AK_SECRET}@057188880000/TTS_7731/13800001234",
        "tencent-sms": f"tencent-sms://{SID}:{SKEY}@1400987654/示范化工/2233445/+8613800001234",
        "tencent-voice": f"tencent-voice://{SID}:{SKEY}@1400987654/5566778/13800001234",
    }
    for scheme, url in urls.items():
        shown = mask_url(url)
        assert shown.startswith(f"{scheme}://") and ":****@" in shown, shown
        for secret in (AK_SECRET, SKEY, "13800001234", AK, SID):
            assert secret not in shown, (shown, secret)
        s = url_secrets(url)
        assert {AK_SECRET, AK} <= s or {SKEY, SID} <= s
        assert "13800001234" in s or "+8613800001234" in s
    assert mask_url(urls["tencent-sms"]) == "tencent-sms://AKID****01:****@1400987654/示范化工/2233445/+86138****1234"
