"""Alibaba Cloud SMS (Dysmsapi ``SendSms``) and voice calls (Dyvmsapi ``SingleCallByTts``).

URLs::

    aliyun-sms://ACCESS_KEY_ID:ACCESS_KEY_SECRET@SIGN_NAME/TEMPLATE_CODE/PHONE[/PHONE...]
    aliyun-voice://ACCESS_KEY_ID:ACCESS_KEY_SECRET@CALLED_SHOW_NUMBER/TTS_CODE/PHONE

``SIGN_NAME`` (短信签名) may be written in Chinese as is or percent-encoded; ``?sign=`` is the
same. ``CALLED_SHOW_NUMBER`` is the caller number bought in the voice console (主叫显号).
Options: ``endpoint`` ``params`` ``maxlen`` (providers/base.py; variables are named:
``${site}`` ...), voice also ``play_times`` (1-3), ``volume`` (0-100), ``speed`` (-500..500).

Signing: "V3 request structure and signature" (Alibaba Cloud SDK documentation, "V3版本请求体&
签名机制", which replaces the V2 HMAC-SHA1 RPC signature and is what the current SDKs send):
algorithm ``ACS3-HMAC-SHA256``; the RPC parameters go in the query string of a ``POST /``
with an empty body, like the official SDK (alibabacloud-dysmsapi20170525 4.x) sends them::

    CanonicalRequest = POST \\n / \\n CanonicalQueryString \\n CanonicalHeaders \\n SignedHeaders \\n
                       hex(sha256(body))
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))
    Authorization: ACS3-HMAC-SHA256 Credential=AccessKeyId,SignedHeaders=host;x-acs-...,Signature=...

with every query key and value percent-encoded per RFC 3986 (``~`` unreserved, space ``%20``)
and sorted, and the signed headers ``host`` and every ``x-acs-*`` header (action, version,
date, nonce, content-sha256), lower-case, sorted. Signed by hand with hashlib/hmac: the
official SDK is a generated client for every action of the product on top of the
tea/darabonba/credentials stack (aiohttp, websocket-client, ...), for two requests that the
documented algorithm signs in 30 lines; the test stand-in checks our requests with the
official signer (alibabacloud-openapi-util, dev dependency). Answers: ``{"Code": "OK",
"Message": "OK", "BizId"/"CallId": ..., "RequestId": ...}``; any other ``Code`` is a
refusal, classified in :func:`classify`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote, urlsplit

from apprise.exception import AppriseImproperlyConfigured
from apprise.plugins.base import NotifyBase

from alerting.notify.providers.base import (
    HttpRequest,
    ProviderPlugin,
    ProviderResult,
    http_failure,
    json_body,
)

ALGORITHM = "ACS3-HMAC-SHA256"

# Error codes (SendSms / SingleCallByTts error centre; V3 gateway errors) -> class
_CODES: dict[str, str] = {
    # credentials / permission
    "SignatureDoesNotMatch": "auth",
    "IncompleteSignature": "auth",
    "InvalidAccessKeyId.NotFound": "auth",
    "InvalidAccessKeyId.Inactive": "auth",
    "InvalidAccessKeyId": "auth",
    "Forbidden.RAM": "auth",
    "Forbidden.AccessKeyDisabled": "auth",
    "isp.RAM_PERMISSION_DENY": "auth",
    "isv.ACCOUNT_ABNORMAL": "auth",
    "isv.ACCOUNT_NOT_EXISTS": "auth",
    "InvalidTimeStamp.Expired": "auth",
    "SignatureNonceUsed": "auth",
    "isv.DENY_IP_RANGE": "auth",
    # money
    "isv.AMOUNT_NOT_ENOUGH": "balance",
    "isv.OUT_OF_SERVICE": "balance",
    "isv.NO_AVAILABLE_VOICE_PACKAGE": "balance",
    # flow control
    "isv.BUSINESS_LIMIT_CONTROL": "quota",
    "isv.DAY_LIMIT_CONTROL": "quota",
    "isv.SMS_OVER_LIMIT": "quota",
    "Throttling": "quota",
    "Throttling.User": "quota",
    "Throttling.Api": "quota",
    # template / sign / caller number
    "isv.SMS_TEMPLATE_ILLEGAL": "template",
    "isv.SMS_SIGNATURE_ILLEGAL": "template",
    "isv.SMS_SIGN_ILLEGAL": "template",
    "isv.TEMPLATE_MISSING_PARAMETERS": "template",
    "isv.TEMPLATE_PARAMS_ILLEGAL": "template",
    "isv.INVALID_JSON_PARAM": "template",
    "isv.PARAM_LENGTH_LIMIT": "template",
    "isv.SMS_CONTENT_ILLEGAL": "template",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": "template",
    "isv.TTS_TEMPLATE_ILLEGAL": "template",
    "isv.TTSCODE_ILLEGAL": "template",
    "isv.DISPLAY_NUMBER_ILLEGAL": "template",
    "isv.CALLED_SHOW_NUMBER_ILLEGAL": "template",
    "isv.VOICE_FILE_ILLEGAL": "template",
    "isv.PARAM_NOT_SUPPORT_URL": "template",
    "isv.EXTEND_CODE_ERROR": "template",
    # phone number
    "isv.MOBILE_NUMBER_ILLEGAL": "number",
    "isv.MOBILE_COUNT_OVER_LIMIT": "number",
    "isv.BLACK_KEY_CONTROL_LIMIT": "number",
    "isv.CALLEDNUMBER_ILLEGAL": "number",
    "isv.PHONENUMBER_BLACKLIST": "number",
    # provider side
    "isp.SYSTEM_ERROR": "provider",
    "isp.GATEWAY_ERROR": "provider",
    "ServiceUnavailable": "provider",
    "InternalError": "provider",
}


def classify(code: str) -> str:
    if code == "OK":
        return "ok"
    if code in _CODES:
        return _CODES[code]
    if code.startswith("isp."):
        return "provider"
    if code.startswith(("Throttling", "isv.BUSINESS_LIMIT")):
        return "quota"
    if any(w in code for w in ("Signature", "AccessKey", "Forbidden", "Unauthorized", "RAM")):
        return "auth"
    if "TEMPLATE" in code or "SIGN" in code:
        return "template"
    if "MOBILE" in code or "NUMBER" in code:
        return "number"
    return "other"


def percent(s: str) -> str:
    """RFC 3986 encoding as the V3 signature specifies (unreserved: A-Z a-z 0-9 - _ . ~)."""
    return quote(s, safe="-_.~", encoding="utf-8")


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))


def sign_v3(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    key_id: str,
    secret: str,
) -> dict[str, str]:
    """The signed headers for a request (``headers``: the ``x-acs-*`` headers except
    ``x-acs-content-sha256``, which is added)."""
    payload_hash = hashlib.sha256(body).hexdigest()
    h = {k.lower(): v.strip() for k, v in headers.items()}
    h["host"] = host
    h["x-acs-content-sha256"] = payload_hash
    signed = sorted(k for k in h if k == "host" or k == "content-type" or k.startswith("x-acs-"))
    canonical_headers = "".join(f"{k}:{h[k]}\n" for k in signed)
    signed_headers = ";".join(signed)
    canonical_request = "\n".join(
        (method, path or "/", canonical_query(query), canonical_headers, signed_headers, payload_hash)
    )
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"
    signature = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    h["authorization"] = f"{ALGORITHM} Credential={key_id},SignedHeaders={signed_headers},Signature={signature}"
    return h


class _AliyunPlugin(ProviderPlugin):
    provider: ClassVar[str] = "aliyun"
    action: ClassVar[str] = ""
    version: ClassVar[str] = "2017-05-25"
    default_maxlen: ClassVar[int] = 35
    # the apprise attributes each scheme sets, typed as in ProviderPlugin (a type checker
    # otherwise compares the schemes' strings with apprise's untyped None)
    service_name: str
    service_url: str
    secure_protocol: str
    templates: tuple[str, ...]

    def request_params(self, values: list[tuple[str, str]]) -> dict[str, str]:
        raise NotImplementedError

    def build_request(self, values: list[tuple[str, str]], now: float, nonce: str) -> HttpRequest:
        query = self.request_params(values)
        host = urlsplit(self.endpoint).netloc
        date = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = sign_v3(
            "POST",
            host,
            "/",
            query,
            {
                "x-acs-action": self.action,
                "x-acs-version": self.version,
                "x-acs-date": date,
                "x-acs-signature-nonce": nonce,
            },
            b"",
            self.user or "",
            self.password or "",
        )
        headers.pop("host")  # requests sets it from the URL (the same value)
        headers["accept"] = "application/json"
        url = f"{self.endpoint}/?{canonical_query(query)}"
        return HttpRequest("POST", url, headers, b"")

    def parse_response(self, status: int, body: bytes) -> ProviderResult:
        data = json_body(status, body)
        if data is None or not isinstance(data.get("Code"), str):
            return http_failure(status, body)
        code = data["Code"]
        kind = classify(code)
        rid = data.get("RequestId")
        msg = str(data.get("Message") or "")
        return ProviderResult(kind == "ok" and status == 200, code, kind, msg, rid if isinstance(rid, str) else None)


def _template_param(values: list[tuple[str, str]]) -> str:
    return json.dumps(dict(values), ensure_ascii=False, separators=(",", ":"))


class AliyunSms(_AliyunPlugin):
    service_name = "Alibaba Cloud SMS (阿里云短信)"
    service_url = "https://www.aliyun.com/product/sms"
    secure_protocol = "aliyunsms"
    scheme: ClassVar[str] = "aliyun-sms"
    kind: ClassVar[str] = "sms"
    action: ClassVar[str] = "SendSms"
    default_endpoint: ClassVar[str] = "https://dysmsapi.aliyuncs.com"
    templates = ("{schema}://{user}:{password}@{sign}/{template}/{targets}",)
    url_layout: ClassVar[tuple[str, ...]] = ("sign", "template")

    def validate(self) -> None:
        if not self.sign:
            raise AppriseImproperlyConfigured("aliyun-sms: the SMS sign name (短信签名, URL host) is missing")
        if not self.template:
            raise AppriseImproperlyConfigured("aliyun-sms: the template code (SMS_..., first path part) is missing")
        self.check_some_phones(1000, after="template code")
        self.ident = self.sign

    def request_params(self, values: list[tuple[str, str]]) -> dict[str, str]:
        return {
            "PhoneNumbers": ",".join(self.phones),
            "SignName": self.sign,
            "TemplateCode": self.template,
            "TemplateParam": _template_param(values),
        }

    @classmethod
    def url_parts(cls, qsd: Mapping[str, str], host: str, segs: list[str]) -> list[str]:
        if qsd.get("sign"):  # ?sign=NAME: the host, if any, is the template code
            return [NotifyBase.unquote(qsd["sign"]), *([host] if host else []), *segs]
        return [host, *segs]


class AliyunVoice(_AliyunPlugin):
    service_name = "Alibaba Cloud voice call (阿里云语音通知)"
    service_url = "https://www.aliyun.com/product/vms"
    secure_protocol = "aliyunvoice"
    scheme: ClassVar[str] = "aliyun-voice"
    kind: ClassVar[str] = "voice"
    action: ClassVar[str] = "SingleCallByTts"
    default_endpoint: ClassVar[str] = "https://dyvmsapi.aliyuncs.com"
    templates = ("{schema}://{user}:{password}@{caller}/{template}/{target}",)
    _OPTIONS: ClassVar[dict[str, tuple[str, int, int]]] = {
        "play_times": ("PlayTimes", 1, 3),
        "volume": ("Volume", 0, 100),
        "speed": ("Speed", -500, 500),
    }
    url_layout: ClassVar[tuple[str, ...]] = ("sign", "template")
    option_keys: ClassVar[tuple[str, ...]] = tuple(_OPTIONS)

    def validate(self) -> None:
        if not self.sign:
            raise AppriseImproperlyConfigured(
                "aliyun-voice: the caller number (CalledShowNumber, 主叫显号, URL host) is missing"
            )
        if not self.template:
            raise AppriseImproperlyConfigured(
                "aliyun-voice: the TTS template code (TTS_..., first path part) is missing"
            )
        self.check_one_phone()
        for k, v in self.options.items():
            _name, lo, hi = self._OPTIONS[k]
            if not (v.lstrip("-").isdigit() and lo <= int(v) <= hi):
                raise AppriseImproperlyConfigured(f"aliyun-voice: {k} must be {lo}..{hi}, got {v!r}")
        self.ident = self.sign

    def request_params(self, values: list[tuple[str, str]]) -> dict[str, str]:
        out = {
            "CalledShowNumber": self.sign,
            "CalledNumber": self.phones[0],
            "TtsCode": self.template,
            "TtsParam": _template_param(values),
        }
        for k, v in self.options.items():
            out[self._OPTIONS[k][0]] = v
        return out
