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
        "timeline.freeze.expired": "Restriction ended on its end date",
        "timeline.freeze.rereview_due": "Re-review date reached",
        "timeline.freeze.rereviewed": "Freeze re-reviewed and kept",
        "timeline.appeal.opened": "Appeal started",
        "timeline.appeal.material_added": "Material uploaded",
        "timeline.appeal.submitted": "Appeal submitted",
        "timeline.appeal.resubmitted": "Appeal resubmitted with more information",
        "timeline.appeal.pre_reviewed": "Machine pre-review recorded",
        "timeline.appeal.claimed": "A reviewer is looking at your appeal",
        "timeline.appeal.assigned": "Appeal assigned to a reviewer",
        "timeline.appeal.unclaimed": "Appeal returned to the queue",
        "timeline.appeal.first_approval": "First of two approvals given",
        "timeline.appeal.needs_more_info": "The reviewer needs more information from you",
        "timeline.appeal.approved": "Appeal approved: please confirm it is you (SMS code and face check)",
        "timeline.appeal.rejected": "Appeal not approved",
        "timeline.appeal.withdrawn": "Appeal withdrawn",
        "timeline.appeal.closed": "Appeal closed: the restriction ended",
        "timeline.verification.cancelled": "Second verification no longer needed",
        "timeline.verification.face_reset": "Face check attempts reset by a review lead",
        "timeline.appeal.expired": "Appeal closed after a period without activity",
        "timeline.appeal.expedited": "Appeal expedited (VIP)",
        "timeline.appeal.sla_breached": "First-response deadline missed: escalated",
        "timeline.verification.started": "Second verification requested",
        "timeline.verification.code_sent": "Verification code sent by SMS",
        "timeline.verification.code_rejected": "A wrong verification code was entered",
        "timeline.verification.sms_passed": "SMS code confirmed",
        "timeline.verification.face_started": "Face check started",
        "timeline.verification.face_failed": "Face check did not match",
        "timeline.verification.face_passed": "Face check passed",
        "timeline.verification.completed": "Identity confirmed",
        "timeline.probation.started": "Large transactions are paused for a while after unfreezing",
        "timeline.probation.ended": "Large transactions are allowed again",
        "timeline.account.kyc_updated": "Identity verification (KYC) updated",
        "timeline.reviewer.conflict_declared": "Reviewer conflict of interest declared",
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
        "timeline.freeze.expired": "限制已到期结束",
        "timeline.freeze.rereview_due": "已到复审日期",
        "timeline.freeze.rereviewed": "冻结已复审并维持",
        "timeline.appeal.opened": "已发起申诉",
        "timeline.appeal.material_added": "已上传材料",
        "timeline.appeal.submitted": "申诉已提交",
        "timeline.appeal.resubmitted": "已补充材料并重新提交申诉",
        "timeline.appeal.pre_reviewed": "已记录机器预审结果",
        "timeline.appeal.claimed": "审核员正在处理您的申诉",
        "timeline.appeal.assigned": "申诉已分派给审核员",
        "timeline.appeal.unclaimed": "申诉已退回待审队列",
        "timeline.appeal.first_approval": "已获得两人审批中的第一人批准",
        "timeline.appeal.needs_more_info": "审核员需要您补充材料",
        "timeline.appeal.approved": "申诉已通过：请完成短信验证码和人脸核验",
        "timeline.appeal.rejected": "申诉未通过",
        "timeline.appeal.withdrawn": "申诉已撤回",
        "timeline.appeal.closed": "申诉已关闭：限制已解除",
        "timeline.verification.cancelled": "已无需二次验证",
        "timeline.verification.face_reset": "审核主管已重置人脸核验次数",
        "timeline.appeal.expired": "申诉因长时间未处理已关闭",
        "timeline.appeal.expedited": "申诉已加急（VIP）",
        "timeline.appeal.sla_breached": "首次响应超时：已升级处理",
        "timeline.verification.started": "已要求二次验证",
        "timeline.verification.code_sent": "验证码短信已发送",
        "timeline.verification.code_rejected": "输入了错误的验证码",
        "timeline.verification.sms_passed": "短信验证码已确认",
        "timeline.verification.face_started": "人脸核验已开始",
        "timeline.verification.face_failed": "人脸核验未通过",
        "timeline.verification.face_passed": "人脸核验已通过",
        "timeline.verification.completed": "身份已确认",
        "timeline.probation.started": "解冻后一段时间内暂停大额交易",
        "timeline.probation.ended": "已恢复大额交易",
        "timeline.account.kyc_updated": "实名认证（KYC）已更新",
        "timeline.reviewer.conflict_declared": "已登记审核员利益冲突",
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
