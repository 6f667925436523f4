"""Interface text in English and zh-CN, chosen from Accept-Language or ``THAWLINE_LANG``."""

from __future__ import annotations

import os

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "bad_request": "Bad request",
        "validation": "Invalid input",
        "unauthorized": "Authentication required",
        "forbidden": "Forbidden",
        "not_found": "Not found",
        "conflict": "Conflict",
        "internal": "Internal error",
        "unavailable": "Service unavailable",
        "verify_ok": "OK: {entries} entries, {checkpoints} checkpoints verified; root {root}",
        "verify_fail": "FAIL at seq {seq}: {what}",
        "proof_ok": "OK: {what}",
        "proof_fail": "FAIL: {what}",
        "timeline.account.registered": "Account registered",
        "timeline.account.frozen": "Account restricted: {reason}",
        "timeline.freeze.released": "Restriction lifted",
    },
    "zh-CN": {
        "bad_request": "请求有误",
        "validation": "输入无效",
        "unauthorized": "需要身份验证",
        "forbidden": "无权执行此操作",
        "not_found": "未找到",
        "conflict": "状态冲突",
        "internal": "内部错误",
        "unavailable": "服务不可用",
        "verify_ok": "校验通过：{entries} 条记录，{checkpoints} 个签名检查点；根哈希 {root}",
        "verify_fail": "校验失败，序号 {seq}：{what}",
        "proof_ok": "证明有效：{what}",
        "proof_fail": "证明无效：{what}",
        "timeline.account.registered": "账户已登记",
        "timeline.account.frozen": "账户受限：{reason}",
        "timeline.freeze.released": "限制已解除",
    },
}


def pick_language(accept_language: str | None) -> str:
    """Choose 'zh-CN' or 'en' from an Accept-Language header (or THAWLINE_LANG)."""
    value = accept_language or os.environ.get("THAWLINE_LANG", "")
    for part in value.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def t(key: str, lang: str = "en", **values: object) -> str:
    """Translate ``key`` into ``lang``, formatting ``values`` in."""
    table = MESSAGES.get(lang, MESSAGES["en"])
    return table.get(key, MESSAGES["en"][key]).format(**values)
