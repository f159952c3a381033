"""Tencent Cloud stand-in: SMS ``SendSms`` (2021-01-11) and VMS ``SendTtsVoice`` (2020-09-02) on
one port, TC3-HMAC-SHA256 verified with tencentcloud-sdk-python-common's ``Sign.sign_tc3``.

Checked: ``POST /`` with a JSON body; ``Authorization: TC3-HMAC-SHA256 Credential=ID/DATE/
SERVICE/tc3_request, SignedHeaders=content-type;host, Signature=..`` where SERVICE is ``sms``
for SendSms and ``vms`` for SendTtsVoice and DATE the UTC date of ``X-TC-Timestamp``, which
must be within ``max_skew``; ``X-TC-Action``, ``X-TC-Version``, ``X-TC-Region``; the action's
required fields (``PhoneNumberSet`` E.164, ``SmsSdkAppId``, ``TemplateId``,
``TemplateParamSet`` strings, ...), the template's number of parameters when ``templates``
says it (``{id: n}``), the app id when ``apps`` is given.

Answers as Tencent Cloud API 3.0 does: ``{"Response": {..., "RequestId": ...}}``; request
errors as ``Response.Error {Code, Message}`` (``AuthFailure.SignatureFailure``, ...); SMS
per number in ``SendStatusSet[].Code`` (``Ok`` or e.g. ``LimitExceeded.PhoneNumberDailyLimit``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
import uuid
from typing import Any

from aiohttp import web
from tencentcloud.common.sign import Sign

from devkit.standins.common import Call, StandinServer

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([a-z]+)/tc3_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
_E164 = re.compile(r"^\+\d{6,15}$")
ACTIONS = {"SendSms": ("sms", "2021-01-11"), "SendTtsVoice": ("vms", "2020-09-02")}
REGIONS = {"ap-guangzhou", "ap-beijing", "ap-nanjing", "ap-shanghai", "ap-singapore"}
MESSAGES = {
    "LimitExceeded.PhoneNumberDailyLimit": "the number of SMS messages sent from a single mobile number "
    "every day exceeds the upper limit",
    "FailedOperation.TemplateIncorrectOrUnapproved": "the template is unapproved or not found",
    "FailedOperation.SignatureIncorrectOrUnapproved": "the signature is unapproved or not found",
    "InvalidParameterValue.IncorrectPhoneNumber": "invalid mobile number",
    "FailedOperation.InsufficientBalanceInSmsPackage": "insufficient package balance",
    "FailedOperation.InsufficientBalanceInVoicePackage": "insufficient package balance",
}


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    """Exactly ``Content-Type: application/json`` as the API sends (the SDK checks it)."""
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode("utf-8"),
        status=status,
        headers={"Content-Type": "application/json"},
    )


class TencentStandin(StandinServer):
    def __init__(
        self,
        keys: dict[str, str],
        *,
        templates: dict[str, int] | None = None,
        apps: set[str] | None = None,
        max_skew: float = 300.0,
    ) -> None:
        super().__init__(keys, max_skew=max_skew)
        self.templates = templates
        self.apps = apps
        self.rejected: list[str] = []

    def _error(self, code: str, message: str, status: int = 200) -> web.Response:
        self.rejected.append(f"{code}: {message}")
        return _json(
            {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}, status=status
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method != "POST" or request.path != "/":
            return self._error("UnsupportedOperation", f"{request.method} {request.path}")
        h = {k.lower(): v for k, v in request.headers.items()}
        action = h.get("x-tc-action", "")
        if action not in ACTIONS:
            return self._error("InvalidAction", f"action {action!r} not found")
        service, version = ACTIONS[action]
        if h.get("x-tc-version") != version:
            return self._error("InvalidParameterValue", f"version {h.get('x-tc-version')!r} of {action}")
        if h.get("x-tc-region") not in REGIONS:
            return self._error("InvalidParameterValue", f"region {h.get('x-tc-region')!r}")
        m = _AUTH.match(h.get("authorization", ""))
        if m is None:
            return self._error("AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256")
        secret_id, date, scope_service, signed, signature = m.groups()
        secret = self.keys.get(secret_id)
        if secret is None:
            return self._error("AuthFailure.SecretIdNotFound", "The SecretId is not found")
        try:
            ts = int(h.get("x-tc-timestamp", ""))
        except ValueError:
            return self._error("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is not a number")
        if abs(time.time() - ts) > self.max_skew:
            return self._error("AuthFailure.SignatureExpire", "the signature expired (X-TC-Timestamp)")
        if date != dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d") or scope_service != service:
            return self._error("AuthFailure.SignatureFailure", "credential scope does not match the request")
        names = signed.split(";")
        if "content-type" not in names or "host" not in names or any(n not in h for n in names):
            return self._error("AuthFailure.SignatureFailure", "content-type and host must be signed")
        canonical = "\n".join((
            "POST", "/", "", "".join(f"{n}:{h[n]}\n" for n in names), signed, hashlib.sha256(body).hexdigest()
        ))
        to_sign = "\n".join((
            "TC3-HMAC-SHA256", str(ts), f"{date}/{service}/tc3_request",
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ))
        if Sign.sign_tc3(secret, date, service, to_sign) != signature:
            return self._error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        if not h.get("content-type", "").startswith("application/json"):
            return self._error("InvalidParameter", "content-type must be application/json")
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self._error("FailedOperation.JsonParseFail", "body is not JSON")
        if not isinstance(data, dict):
            return self._error("FailedOperation.JsonParseFail", "body is not a JSON object")
        return self._sms(secret_id, data) if action == "SendSms" else self._voice(secret_id, data)

    def _template_problem(self, data: dict[str, Any], app_key: str) -> str | None:
        params = data.get("TemplateParamSet", [])
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return "InvalidParameterValue.TemplateParameterFormatError"
        if self.apps is not None and data.get(app_key) not in self.apps:
            return "UnauthorizedOperation.SmsSdkAppIdVerifyFail" if app_key == "SmsSdkAppId" else (
                "UnauthorizedOperation.VoiceSdkAppidVerifyFail")
        tid = data.get("TemplateId")
        if self.templates is not None:
            if tid not in self.templates:
                return "FailedOperation.TemplateIncorrectOrUnapproved"
            if len(params) != self.templates[tid]:
                return "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"
        return None

    def _sms(self, secret_id: str, data: dict[str, Any]) -> web.Response:
        for name in ("PhoneNumberSet", "SmsSdkAppId", "TemplateId"):
            if not data.get(name):
                return self._error("MissingParameter", f"{name} is required")
        phones = data["PhoneNumberSet"]
        if not isinstance(phones, list) or not all(isinstance(p, str) for p in phones):
            return self._error("InvalidParameter", "PhoneNumberSet must be a list of strings")
        problem = self._template_problem(data, "SmsSdkAppId")
        if problem is not None:
            self.calls.append(Call("SendSms", secret_id, phones, data.get("TemplateParamSet"), problem, data))
            return self._error(problem, MESSAGES.get(problem, problem))
        statuses = []
        first_error = None
        for p in phones:
            code = "InvalidParameterValue.IncorrectPhoneNumber" if not _E164.match(p) else self.answer.get(p, "Ok")
            first_error = first_error or (code if code != "Ok" else None)
            statuses.append({
                "SerialNo": uuid.uuid4().hex, "PhoneNumber": p, "Fee": 1 if code == "Ok" else 0,
                "SessionContext": "", "Code": code,
                "Message": "send success" if code == "Ok" else MESSAGES.get(code, code), "IsoCode": "CN",
            })
        self.calls.append(Call("SendSms", secret_id, phones, data.get("TemplateParamSet"), first_error or "Ok", data))
        return _json({"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}})

    def _voice(self, secret_id: str, data: dict[str, Any]) -> web.Response:
        for name in ("TemplateId", "CalledNumber", "VoiceSdkAppid"):
            if not data.get(name):
                return self._error("MissingParameter", f"{name} is required")
        phone = data["CalledNumber"]
        code = self._template_problem(data, "VoiceSdkAppid")
        if code is None and not (isinstance(phone, str) and _E164.match(phone)):
            code = "InvalidParameterValue.CalledNumberVerifyFail"
        if code is None:
            code = self.answer.get(phone)
        self.calls.append(Call("SendTtsVoice", secret_id, [str(phone)], data.get("TemplateParamSet"), code or "Ok",
                               data))
        if code is not None:
            return self._error(code, MESSAGES.get(code, code))
        return _json({"Response": {"SendStatus": {"CallId": uuid.uuid4().hex, "SessionContext": ""},
                                               "RequestId": str(uuid.uuid4())}})
