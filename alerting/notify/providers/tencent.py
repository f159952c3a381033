"""Tencent Cloud SMS (``SendSms`` 2021-01-11) and voice messages (VMS ``SendTtsVoice`` 2020-09-02).

URLs::

    tencent-sms://SECRET_ID:SECRET_KEY@SDK_APP_ID/SIGN/TEMPLATE_ID/PHONE[/PHONE...]
    tencent-voice://SECRET_ID:SECRET_KEY@VOICE_SDK_APP_ID/TEMPLATE_ID/PHONE

``SIGN`` is the SMS sign name (短信签名, Chinese as is or percent-encoded). A mainland number
without ``+`` gets ``+86``. Options: ``endpoint`` ``params`` ``maxlen`` (providers/base.py;
Tencent variables are positional ``{1} {2} ...`` in ``params`` order), ``region`` (default
``ap-guangzhou``), voice also ``play_times`` (1-3).

Signing: Tencent Cloud API 3.0 "Signature v3" (签名方法 v3, ``TC3-HMAC-SHA256``), for a
``POST /`` with a JSON body::

    CanonicalRequest = POST \\n / \\n \\n content-type:application/json\\nhost:HOST\\n \\n content-type;host \\n
                       hex(sha256(body))
    StringToSign     = TC3-HMAC-SHA256 \\n TIMESTAMP \\n DATE/SERVICE/tc3_request \\n hex(sha256(CanonicalRequest))
    SecretSigning    = HMAC(HMAC(HMAC("TC3" + SecretKey, DATE), SERVICE), "tc3_request")
    Signature        = hex(HMAC(SecretSigning, StringToSign))

with DATE the UTC date of TIMESTAMP and SERVICE ``sms`` / ``vms``; headers ``X-TC-Action``,
``X-TC-Version``, ``X-TC-Timestamp``, ``X-TC-Region``. Signed by hand with hashlib/hmac:
the official SDK (tencentcloud-sdk-python-common + one package per product) would be two
more runtime dependencies for two requests; the test stand-in verifies our requests with
the SDK's own signer, and the SDK clients are run against the stand-in (dev dependencies).
Answers: ``{"Response": {..., "RequestId": ...}}``, a refusal as ``Response.Error.Code``;
SMS reports per number in ``SendStatusSet[].Code`` (``Ok``), classified in :func:`classify`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any, ClassVar
from urllib.parse import urlsplit

from apprise.exception import AppriseImproperlyConfigured

from alerting.notify.providers.base import (
    HttpRequest,
    ProviderPlugin,
    ProviderResult,
    http_failure,
    json_body,
    mask_phone,
)

ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
REGIONS = ("ap-guangzhou", "ap-beijing", "ap-nanjing", "ap-shanghai", "ap-singapore")

_CODES: dict[str, str] = {
    "Ok": "ok",
    "FailedOperation.InsufficientBalanceInSmsPackage": "balance",
    "FailedOperation.InsufficientBalanceInVoicePackage": "balance",
    "UnauthorizedOperation.ServiceSuspendDueToArrears": "balance",
    "FailedOperation.NotEnterpriseCertification": "auth",
    "UnauthorizedOperation.SdkAppIdIsDisabled": "auth",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": "auth",
    "UnauthorizedOperation.VoiceSdkAppidVerifyFail": "auth",
    "UnauthorizedOperation.RequestIpNotInWhitelist": "auth",
    "UnauthorizedOperation.RequestPermissionDeny": "auth",
    "UnauthorizedOperation.IndividualUserMarketingSmsPermissionDeny": "auth",
    "FailedOperation.ProhibitSubAccountUse": "auth",
    "InvalidParameterValue.SdkAppIdNotExist": "auth",
    "InvalidParameterValue.SdkAppidNotExist": "auth",
    "FailedOperation.PhoneNumberInBlacklist": "number",
    "FailedOperation.PhoneNumberParseFail": "number",
    "InvalidParameterValue.IncorrectPhoneNumber": "number",
    "InvalidParameterValue.CalledNumberVerifyFail": "number",
    "LimitExceeded.PhoneNumberCountLimit": "number",
    "FailedOperation.ContainSensitiveWord": "template",
    "InvalidParameter.DirtyWordFound": "template",
    "InvalidParameterValue.ContentLengthLimit": "template",
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": "template",
    "InvalidParameterValue.TemplateParameterFormatError": "template",
    "InvalidParameterValue.TemplateParameterLengthLimit": "template",
    "FailedOperation.FailResolvePacket": "template",
    "FailedOperation.FailedNoNumberToDial": "template",
}


def classify(code: str) -> str:
    if code in _CODES:
        return _CODES[code]
    if code.startswith("AuthFailure") or code.startswith("UnauthorizedOperation"):
        return "auth"
    if code.startswith(("LimitExceeded", "RequestLimitExceeded")):
        return "quota"
    if any(w in code for w in ("Template", "Signature", "MissingSignature", "SignId", "SignName")):
        return "template"
    if code.startswith(("UnsupportedOperation.Contain", "UnsupportedOperation.Global",
                        "UnsupportedOperation.ChineseMainland")):
        return "number"
    if code.startswith(("InternalError", "FailedOperation.AccessUpstreamTimeout", "ResourceUnavailable")):
        return "provider"
    return "other"


def e164(p: str) -> str:
    if p.startswith("+"):
        return p
    if len(p) == 11 and p.startswith("1"):  # mainland mobile
        return "+86" + p
    return "+" + p


def sign_tc3(
    secret_id: str, secret_key: str, service: str, host: str, body: bytes, timestamp: int
) -> tuple[str, str]:
    """(Authorization header, date) for a JSON ``POST /``."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical_request = "\n".join(
        ("POST", "/", "", f"content-type:{CONTENT_TYPE}\nhost:{host}\n", "content-type;host",
         hashlib.sha256(body).hexdigest())
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        (ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    )

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    signing = h(h(h(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    signature = hmac.new(signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    auth = f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"
    return auth, date


class _TencentPlugin(ProviderPlugin):
    provider: ClassVar[str] = "tencent"
    service: ClassVar[str] = ""
    action: ClassVar[str] = ""
    version: ClassVar[str] = ""
    # the apprise attributes each scheme sets, typed as in ProviderPlugin (a type checker
    # otherwise compares the schemes' strings with apprise's untyped None)
    service_name: str
    service_url: str
    secure_protocol: str
    templates: tuple[str, ...]

    def key_names(self) -> tuple[str, str]:
        return ("SecretId", "SecretKey")

    def payload(self, values: list[tuple[str, str]]) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def region(self) -> str:
        return self.options.get("region", "ap-guangzhou")

    def check_region_and_app(self) -> None:
        if self.region not in REGIONS:
            raise AppriseImproperlyConfigured(f"{self.scheme}: region must be one of {', '.join(REGIONS)}")
        if not self.ident.isdigit():
            raise AppriseImproperlyConfigured(
                f"{self.scheme}: the SdkAppId (URL host) must be digits (1400...), got {self.ident!r}"
            )

    def check_template_id(self, where: str) -> None:
        if not self.template.isdigit():
            raise AppriseImproperlyConfigured(
                f"{self.scheme}: the template id ({where}) must be digits"
                + (f", got {self.template!r}" if self.template else "")
            )

    def build_request(self, values: list[tuple[str, str]], now: float, nonce: str) -> HttpRequest:
        body = json.dumps(self.payload(values), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        host = urlsplit(self.endpoint).netloc
        ts = int(now)
        auth, _ = sign_tc3(self.user or "", self.password or "", self.service, host, body, ts)
        headers = {
            "Authorization": auth,
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": self.action,
            "X-TC-Version": self.version,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": self.region,
        }
        return HttpRequest("POST", self.endpoint + "/", headers, body)

    def parse_response(self, status: int, body: bytes) -> ProviderResult:
        data = json_body(status, body)
        resp = data.get("Response") if data is not None else None
        if not isinstance(resp, dict):
            return http_failure(status, body)
        rid = resp.get("RequestId") if isinstance(resp.get("RequestId"), str) else None
        err = resp.get("Error")
        if isinstance(err, dict):
            code = str(err.get("Code") or "Error")
            return ProviderResult(False, code, classify(code), str(err.get("Message") or ""), rid)
        if status != 200:
            return http_failure(status, body)
        return self.parse_ok(resp, rid)

    def parse_ok(self, resp: dict[str, Any], rid: str | None) -> ProviderResult:
        return ProviderResult(True, "Ok", "ok", "", rid)


class TencentSms(_TencentPlugin):
    service_name = "Tencent Cloud SMS (腾讯云短信)"
    service_url = "https://cloud.tencent.com/product/sms"
    secure_protocol = "tencentsms"
    scheme: ClassVar[str] = "tencent-sms"
    kind: ClassVar[str] = "sms"
    service: ClassVar[str] = "sms"
    action: ClassVar[str] = "SendSms"
    version: ClassVar[str] = "2021-01-11"
    default_endpoint: ClassVar[str] = "https://sms.tencentcloudapi.com"
    templates = ("{schema}://{user}:{password}@{appid}/{sign}/{template}/{targets}",)
    url_layout: ClassVar[tuple[str, ...]] = ("ident", "sign", "template")
    option_keys: ClassVar[tuple[str, ...]] = ("region",)

    def validate(self) -> None:
        self.check_region_and_app()
        if not self.sign:
            raise AppriseImproperlyConfigured("tencent-sms: the sign name (短信签名, first path part) is missing")
        self.check_template_id("second path part")
        self.check_some_phones(200, after="template id")

    def payload(self, values: list[tuple[str, str]]) -> dict[str, Any]:
        return {
            "PhoneNumberSet": [e164(p) for p in self.phones],
            "SmsSdkAppId": self.ident,
            "SignName": self.sign,
            "TemplateId": self.template,
            "TemplateParamSet": [v for _, v in values],
        }

    def parse_ok(self, resp: dict[str, Any], rid: str | None) -> ProviderResult:
        statuses = resp.get("SendStatusSet")
        if not isinstance(statuses, list) or not statuses:
            return ProviderResult(False, "NoSendStatus", "http", "answer without SendStatusSet", rid)
        for s in statuses:
            code = str(s.get("Code") if isinstance(s, dict) else "")
            if code != "Ok":
                phone = mask_phone(str(s.get("PhoneNumber", ""))) if isinstance(s, dict) else "?"
                msg = str(s.get("Message") or "") if isinstance(s, dict) else ""
                return ProviderResult(False, code or "Error", classify(code), f"{phone}: {msg}", rid)
        return ProviderResult(True, "Ok", "ok", "", rid)


class TencentVoice(_TencentPlugin):
    service_name = "Tencent Cloud voice message (腾讯云语音消息)"
    service_url = "https://cloud.tencent.com/product/vms"
    secure_protocol = "tencentvoice"
    scheme: ClassVar[str] = "tencent-voice"
    kind: ClassVar[str] = "voice"
    service: ClassVar[str] = "vms"
    action: ClassVar[str] = "SendTtsVoice"
    version: ClassVar[str] = "2020-09-02"
    default_endpoint: ClassVar[str] = "https://vms.tencentcloudapi.com"
    templates = ("{schema}://{user}:{password}@{appid}/{template}/{target}",)
    url_layout: ClassVar[tuple[str, ...]] = ("ident", "template")
    option_keys: ClassVar[tuple[str, ...]] = ("region", "play_times")

    def validate(self) -> None:
        self.check_region_and_app()
        self.check_template_id("first path part")
        self.check_one_phone()
        pt = self.options.get("play_times")
        if pt is not None and pt not in ("1", "2", "3"):
            raise AppriseImproperlyConfigured(f"tencent-voice: play_times must be 1..3, got {pt!r}")

    def payload(self, values: list[tuple[str, str]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "TemplateId": self.template,
            "TemplateParamSet": [v for _, v in values],
            "CalledNumber": e164(self.phones[0]),
            "VoiceSdkAppid": self.ident,
        }
        if "play_times" in self.options:
            out["PlayTimes"] = int(self.options["play_times"])
        return out

    def parse_ok(self, resp: dict[str, Any], rid: str | None) -> ProviderResult:
        st = resp.get("SendStatus")
        if not isinstance(st, dict) or not st.get("CallId"):
            return ProviderResult(False, "NoCallId", "http", "answer without SendStatus.CallId", rid)
        return ProviderResult(True, "Ok", "ok", "", rid)
