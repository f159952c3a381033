"""Local stand-ins for the SMS / voice-call APIs of Alibaba Cloud and Tencent Cloud (tests,
and commissioning a site's notify URLs with ``?endpoint=http://127.0.0.1:PORT``).

Each is a real HTTP server on a loopback port that checks a request the way the provider
documents it (action, version, required parameters, timestamp window, nonce reuse) and
verifies its signature with the configured secret **using the provider's own signer**
(alibabacloud-openapi-util's ``get_authorization`` for ACS3-HMAC-SHA256, tencentcloud-sdk-
python-common's ``Sign.sign_tc3`` for TC3-HMAC-SHA256; dev dependencies), then answers
success or the provider's error code in the provider's answer shape. ``answer[phone] =
code`` makes it refuse that number with ``code``; every request is recorded in ``calls``.

    async with AliyunStandin({"LTAI...": "secret"}) as ali:   # ali.url -> http://127.0.0.1:PORT
        ...
"""

from devkit.standins.aliyun import AliyunStandin
from devkit.standins.common import Call
from devkit.standins.tencent import TencentStandin

__all__ = ["AliyunStandin", "Call", "TencentStandin"]
