"""Alibaba Cloud stand-in: Dysmsapi ``SendSms`` and Dyvmsapi ``SingleCallByTts`` (2017-05-25) on
one port, V3 signature (ACS3-HMAC-SHA256) verified with alibabacloud-openapi-util.

Checked: ``POST /``; ``Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,
Signature=..`` with every ``x-acs-*`` header and ``host`` signed; ``x-acs-content-sha256`` is
the body's SHA-256; ``x-acs-date`` within ``max_skew``; a nonce is never reused; the action's
version and required parameters; ``TemplateParam`` / ``TtsParam`` a JSON object of strings
holding every variable of the template when ``templates`` says which (``{code: {var, ...}}``);
the sign name / caller number when ``signs`` is given; phone numbers.

Answers (HTTP 200 unless noted), as Alibaba Cloud does: ``{"Code": "OK", "Message": "OK",
"BizId"|"CallId": ..., "RequestId": ...}``; a refusal ``{"Code": "isv.…", "Message": ...}``;
signature errors HTTP 400 ``SignatureDoesNotMatch`` / 404 ``InvalidAccessKeyId.NotFound``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from alibabacloud_openapi_util.client import Client as OpenApiUtil

from devkit.standins.common import Call, StandinServer

_AUTH = re.compile(r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([a-z0-9;-]+),Signature=([0-9a-f]{64})$")
_PHONE = re.compile(r"^(\+?86)?1[3-9]\d{9}$|^\+?\d{6,15}$")
VERSION = "2017-05-25"
ACTIONS = {
    "SendSms": ("PhoneNumbers", "SignName", "TemplateCode"),
    "SingleCallByTts": ("CalledShowNumber", "CalledNumber", "TtsCode"),
}
MESSAGES = {
    "isv.BUSINESS_LIMIT_CONTROL": "触发号码天级流控Permits:10",
    "isv.AMOUNT_NOT_ENOUGH": "账户余额不足",
    "isv.SMS_TEMPLATE_ILLEGAL": "该账号下找不到对应模板",
    "isv.SMS_SIGNATURE_ILLEGAL": "该账号下找不到对应签名",
    "isv.MOBILE_NUMBER_ILLEGAL": "非法手机号",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量中存在未赋值变量",
    "isv.INVALID_JSON_PARAM": "JSON参数不合法，只接受字符串值",
    "isv.TTS_TEMPLATE_ILLEGAL": "TTS模板不存在或未审核通过",
    "isv.OUT_OF_SERVICE": "业务停机",
    "isp.SYSTEM_ERROR": "系统错误",
}


class AliyunStandin(StandinServer):
    def __init__(
        self,
        keys: dict[str, str],
        *,
        templates: dict[str, set[str]] | None = None,
        signs: set[str] | None = None,
        max_skew: float = 900.0,
    ) -> None:
        super().__init__(keys, max_skew=max_skew)
        self.templates = templates
        self.signs = signs
        self.rejected: list[str] = []  # why requests were refused before reaching an action

    def _error(self, status: int, code: str, message: str) -> web.Response:
        self.rejected.append(f"{code}: {message}")
        return web.json_response(
            {"RequestId": uuid.uuid4().hex.upper(), "Code": code, "Message": message, "HostId": "standin"},
            status=status,
        )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method != "POST" or request.path != "/":
            return self._error(404, "InvalidAction.NotFound", f"{request.method} {request.path}")
        h = {k.lower(): v for k, v in request.headers.items()}
        m = _AUTH.match(h.get("authorization", ""))
        if m is None:
            return self._error(400, "IncompleteSignature", "Authorization is not ACS3-HMAC-SHA256")
        key_id, signed, _signature = m.groups()  # compared as the whole header below
        signed_names = signed.split(";")
        need = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
        missing = sorted(n for n in need | {k for k in h if k.startswith("x-acs-")} if n not in signed_names)
        if missing:
            return self._error(400, "IncompleteSignature", f"headers not signed: {', '.join(missing)}")
        if any(n not in h for n in signed_names):
            return self._error(400, "IncompleteSignature", "a signed header is missing")
        if h["x-acs-content-sha256"] != hashlib.sha256(body).hexdigest():
            return self._error(400, "SignatureDoesNotMatch", "x-acs-content-sha256 is not the body's SHA-256")
        secret = self.keys.get(key_id)
        if secret is None:
            return self._error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        try:
            when = dt.datetime.strptime(h["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return self._error(400, "InvalidTimeStamp.Format", h["x-acs-date"])
        if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > self.max_skew:
            return self._error(400, "InvalidTimeStamp.Expired", "x-acs-date is out of the allowed window")
        query = {k: v for k, v in request.query.items()}
        req = SimpleNamespace(
            method="POST", pathname="/", query=query, headers={n: h[n] for n in signed_names}
        )
        expected = OpenApiUtil.get_authorization(req, "ACS3-HMAC-SHA256", h["x-acs-content-sha256"], key_id, secret)
        if expected != h["authorization"]:
            return self._error(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        nonce = h["x-acs-signature-nonce"]
        if nonce in self._nonces:
            return self._error(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(nonce)
        action = h["x-acs-action"]
        if action not in ACTIONS or h["x-acs-version"] != VERSION:
            return self._error(400, "InvalidVersion", f"{action} {h['x-acs-version']}")
        for name in ACTIONS[action]:
            if not query.get(name):
                return self._error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        return self._act(action, key_id, query)

    def _act(self, action: str, key_id: str, q: dict[str, str]) -> web.Response:
        sms = action == "SendSms"
        phones = q["PhoneNumbers"].split(",") if sms else [q["CalledNumber"]]
        raw = q.get("TemplateParam" if sms else "TtsParam", "{}")
        template = q["TemplateCode" if sms else "TtsCode"]
        sign = q["SignName" if sms else "CalledShowNumber"]
        params: Any = None
        code = "OK"
        try:
            params = json.loads(raw)
        except ValueError:
            code = "isv.INVALID_JSON_PARAM"
        if code == "OK" and not (isinstance(params, dict) and all(isinstance(v, str) for v in params.values())):
            code = "isv.INVALID_JSON_PARAM"
        if code == "OK" and self.signs is not None and sign not in self.signs:
            code = "isv.SMS_SIGNATURE_ILLEGAL" if sms else "isv.DISPLAY_NUMBER_ILLEGAL"
        if code == "OK" and self.templates is not None:
            if template not in self.templates:
                code = "isv.SMS_TEMPLATE_ILLEGAL" if sms else "isv.TTS_TEMPLATE_ILLEGAL"
            elif not self.templates[template] <= set(params):
                code = "isv.TEMPLATE_MISSING_PARAMETERS"
        if code == "OK" and not all(_PHONE.match(p) for p in phones):
            code = "isv.MOBILE_NUMBER_ILLEGAL"
        if code == "OK":
            code = next((self.answer[p] for p in phones if p in self.answer), "OK")
        self.calls.append(Call(action, key_id, phones, params, code, dict(q)))
        out: dict[str, Any] = {"RequestId": uuid.uuid4().hex.upper(), "Code": code,
                               "Message": "OK" if code == "OK" else MESSAGES.get(code, code)}
        if code == "OK":
            out["BizId" if sms else "CallId"] = uuid.uuid4().hex
        return web.json_response(out)
