"""Notification templates: every template renders in both languages, with the right content and sizes."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

import jinja2
import pytest

from thawline.services.templates import HOLDER_TEMPLATES, LANGS, STAFF_TEMPLATES, Rendered, render

ALL_TEMPLATES = sorted(HOLDER_TEMPLATES | STAFF_TEMPLATES)
CHINESE = re.compile(r"[\u4e00-\u9fff]")

ACCOUNT = "acc_0001234"
APPEAL = "apl_3f9c2a7b81d04e65"
FREEZE = "frz_a1b2c3d4e5f60718"
PORTAL = "https://portal.example/accounts/acc_0001234"

TEXT: dict[str, dict[str, Any]] = {
    "en": {
        "reason": "Unusual activity was detected on your account and it needs to be checked.",
        "materials": [
            "Photo of the front and back of your identity document",
            "Proof of the source of funds",
        ],
        "scope_text": "payments above 5,000 CNY",
        "missing": [
            "Upload a clear photo of your identity document.",
            "Explain the incoming transfers received on 2 June.",
        ],
        "reasons": [
            "The documents do not show the source of the funds.",
            "The explanation does not match the transactions.",
        ],
        "steps": ["SMS code", "face check"],
        "category": "fraud_suspected",
    },
    "zh-CN": {
        "reason": "您的账户存在异常交易，需要进一步核实。",
        "materials": ["身份证件正反面照片", "资金来源证明"],
        "scope_text": "单笔超过 5,000 元的付款",
        "missing": ["请上传清晰的身份证件照片。", "请说明 6 月 2 日收到的多笔转入款项的来源。"],
        "reasons": ["所提供的材料无法证明资金来源。", "情况说明与交易记录不符。"],
        "steps": ["短信验证码", "人脸核验"],
        "category": "fraud_suspected",
    },
}


def variables(name: str, lang: str, **overrides: Any) -> dict[str, Any]:
    """Realistic variables for ``name`` in ``lang``, with every optional branch switched on."""
    text = TEXT[lang]
    common: dict[str, Any] = {"account_id": ACCOUNT, "portal_url": PORTAL, "lang": lang}
    freeze = {
        "freeze_id": FREEZE,
        "reason": text["reason"],
        "materials": text["materials"],
        "self_service": False,
        "review_by": "2025-07-01",
    }
    extra: dict[str, dict[str, Any]] = {
        "frozen": freeze,
        "restricted": {**freeze, "scope_text": text["scope_text"]},
        "appeal_received": {
            "appeal_id": APPEAL,
            "round": 2,
            "first_response_due": "2025-06-05 14:00",
            "expedited": True,
        },
        "materials_missing": {
            "appeal_id": APPEAL,
            "missing": text["missing"],
            "deadline": "2025-06-10 23:59",
        },
        "in_review": {"appeal_id": APPEAL},
        "needs_more_info": {
            "appeal_id": APPEAL,
            "missing": text["missing"],
            "note_codes": ["doc_unreadable", "funds_unexplained"],
            "deadline": "2025-06-10 23:59",
        },
        "approved": {"appeal_id": APPEAL, "steps": text["steps"]},
        "rejected": {"appeal_id": APPEAL, "reasons": text["reasons"], "rounds_left": 1},
        "verification_requested": {
            "appeal_id": APPEAL,
            "steps": text["steps"],
            "expires": "2025-06-06 14:00",
        },
        "verification_code": {"code": "482913", "minutes": 10},
        "released": {"freeze_id": FREEZE, "probation_until": "2025-06-07 09:30", "still_restricted": True},
        "probation_ended": {},
        "sla_reminder": {"appeal_id": APPEAL, "first_response_due": "2025-06-05 14:00"},
        "staff_assigned": {
            "appeal_id": APPEAL,
            "freeze_id": FREEZE,
            "category": text["category"],
            "first_response_due": "2025-06-05 14:00",
            "assigned_by": "lead_042",
        },
        "staff_sla_warning": {"appeal_id": APPEAL, "first_response_due": "2025-06-05 14:00", "hours_left": 6},
        "staff_sla_breached": {"appeal_id": APPEAL, "first_response_due": "2025-06-05 14:00"},
        "staff_four_eyes_waiting": {
            "appeal_id": APPEAL,
            "category": text["category"],
            "first_approver": "rev_017",
        },
    }
    return {**common, **extra[name], **overrides}


# Every optional branch switched off: empty lists, no dates, no flags.
SPARSE: dict[str, dict[str, Any]] = {
    "frozen": {"materials": [], "self_service": True},
    "restricted": {"materials": [], "self_service": True},
    "appeal_received": {"round": 1, "expedited": False},
    "materials_missing": {"deadline": None},
    "needs_more_info": {"missing": [], "note_codes": [], "deadline": None},
    "approved": {"steps": []},
    "rejected": {"reasons": [], "rounds_left": 0},
    "verification_requested": {"steps": [], "expires": None},
    "released": {"probation_until": None, "still_restricted": False},
    "staff_assigned": {"first_response_due": None},
    "staff_sla_warning": {"hours_left": 0},
}


def check_shape(out: Rendered) -> None:
    """Subject and SMS are single non-empty lines; the body is non-empty, tidy and fully rendered."""
    assert out.subject
    assert out.sms
    assert out.body
    assert "\n" not in out.subject
    assert "\n" not in out.sms
    assert out.subject == out.subject.strip()
    assert out.sms == out.sms.strip()
    assert out.body == out.body.strip()
    assert "\n\n\n" not in out.body
    for text in (out.subject, out.body, out.sms):
        assert "{{" not in text
        assert "{%" not in text
        assert "None" not in text


def test_the_template_sets_hold_the_thirteen_holder_and_four_staff_templates() -> None:
    assert len(HOLDER_TEMPLATES) == 13
    assert len(STAFF_TEMPLATES) == 4
    assert not HOLDER_TEMPLATES & STAFF_TEMPLATES
    assert LANGS == ("zh-CN", "en")


def test_every_template_has_a_file_in_both_languages() -> None:
    root = files("thawline").joinpath("resources/templates")
    for lang in LANGS:
        for name in ALL_TEMPLATES:
            assert root.joinpath(lang, f"{name}.j2").is_file(), f"{lang}/{name}.j2"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_every_template_renders_in_both_languages_with_all_options_on(name: str, lang: str) -> None:
    out = render(name, lang, variables(name, lang))
    check_shape(out)
    assert PORTAL in out.body
    assert out.body.startswith("您好，" if lang == "zh-CN" else "Hello,")
    if lang == "zh-CN":
        assert CHINESE.search(out.subject)
        assert CHINESE.search(out.body)
        assert CHINESE.search(out.sms)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_every_template_renders_in_both_languages_with_all_options_off(name: str, lang: str) -> None:
    out = render(name, lang, variables(name, lang, **SPARSE.get(name, {})))
    check_shape(out)
    assert PORTAL in out.body


@pytest.mark.parametrize("name", sorted(HOLDER_TEMPLATES))
def test_holder_bodies_say_what_to_do_next(name: str) -> None:
    assert "What to do next:" in render(name, "en", variables(name, "en")).body
    assert "接下来您可以：" in render(name, "zh-CN", variables(name, "zh-CN")).body


@pytest.mark.parametrize("name", sorted(HOLDER_TEMPLATES - {"verification_code"}))
def test_holder_sms_points_to_the_in_site_messages(name: str) -> None:
    assert "details in your in-site messages" in render(name, "en", variables(name, "en")).sms.lower()
    assert "详情见站内信" in render(name, "zh-CN", variables(name, "zh-CN")).sms


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", ["frozen", "restricted"])
def test_the_freeze_notice_lists_each_material_with_the_reason_and_portal(name: str, lang: str) -> None:
    v = variables(name, lang)
    body = render(name, lang, v).body
    lines = body.splitlines()
    for material in v["materials"]:
        assert f"- {material}" in lines
    assert v["reason"] in body
    assert PORTAL in body
    assert FREEZE in body
    assert "2025-07-01" in body


def test_the_zh_cn_freeze_notice_is_written_in_chinese() -> None:
    out = render("frozen", "zh-CN", variables("frozen", "zh-CN"))
    assert out.subject == "您的账户已被冻结"
    assert "您的账户 acc_0001234 已被冻结" in out.body
    assert "冻结原因：您的账户存在异常交易，需要进一步核实。" in out.body


def test_a_freeze_without_materials_has_no_materials_heading() -> None:
    en = render("frozen", "en", variables("frozen", "en", materials=[])).body
    zh = render("frozen", "zh-CN", variables("frozen", "zh-CN", materials=[])).body
    assert "prepare the following" not in en
    assert "请准备以下材料" not in zh
    assert "\n- " not in en
    assert "\n- " not in zh


def test_a_self_service_freeze_explains_identity_verification_instead_of_an_appeal() -> None:
    en = render("frozen", "en", variables("frozen", "en", self_service=True)).body
    zh = render("frozen", "zh-CN", variables("frozen", "zh-CN", self_service=True)).body
    assert "complete identity verification" in en
    assert "submit an appeal" not in en
    assert "自行解除冻结" in zh
    assert "提交申诉" not in zh


def test_the_restriction_notice_states_its_scope() -> None:
    en = render("restricted", "en", variables("restricted", "en")).body
    zh = render("restricted", "zh-CN", variables("restricted", "zh-CN")).body
    assert "Restricted: payments above 5,000 CNY" in en
    assert "限制范围：单笔超过 5,000 元的付款" in zh


@pytest.mark.parametrize(("lang", "route"), [("en", "appeal again"), ("zh-CN", "再次申诉")])
def test_a_rejection_shows_the_second_appeal_route_only_while_rounds_are_left(lang: str, route: str) -> None:
    more = render("rejected", lang, variables("rejected", lang, rounds_left=1))
    last = render("rejected", lang, variables("rejected", lang, rounds_left=0))
    assert route in more.body
    assert route in more.sms
    assert route not in last.body
    assert route not in last.sms
    for reason in TEXT[lang]["reasons"]:
        assert f"- {reason}" in more.body.splitlines()


def test_a_final_rejection_points_to_customer_service_and_the_regulator() -> None:
    en = render("rejected", "en", variables("rejected", "en", rounds_left=0)).body
    zh = render("rejected", "zh-CN", variables("rejected", "zh-CN", rounds_left=0)).body
    assert "final" in en
    assert "customer service" in en
    assert "regulator" in en
    assert "最终处理结果" in zh
    assert "客服" in zh
    assert "监管部门" in zh


@pytest.mark.parametrize("lang", LANGS)
def test_the_verification_code_sms_carries_the_code_and_a_do_not_share_warning(lang: str) -> None:
    out = render("verification_code", lang, variables("verification_code", lang))
    assert "482913" in out.sms
    assert "482913" in out.body
    assert "482913" not in out.subject
    assert "10" in out.sms
    if lang == "en":
        assert out.subject == "Your verification code"
        assert "Never share" in out.sms
        assert "Never share" in out.body
    else:
        assert out.subject == "您的验证码"
        assert "请勿" in out.sms
        assert "请勿将验证码告诉任何人" in out.body


@pytest.mark.parametrize("lang", LANGS)
def test_lists_in_other_notices_are_bulleted_lines(lang: str) -> None:
    text = TEXT[lang]
    checks = {
        "materials_missing": text["missing"],
        "needs_more_info": text["missing"],
        "approved": text["steps"],
        "verification_requested": text["steps"],
    }
    for name, items in checks.items():
        lines = render(name, lang, variables(name, lang)).body.splitlines()
        for item in items:
            assert f"- {item}" in lines, (name, item)


def test_reason_codes_are_listed_for_customer_service() -> None:
    en = render("needs_more_info", "en", variables("needs_more_info", "en")).body
    zh = render("needs_more_info", "zh-CN", variables("needs_more_info", "zh-CN")).body
    assert "doc_unreadable, funds_unexplained" in en
    assert "doc_unreadable、funds_unexplained" in zh


def test_the_release_notice_mentions_probation_and_remaining_restrictions() -> None:
    en = render("released", "en", variables("released", "en"))
    assert "2025-06-07 09:30" in en.body
    assert "Other restrictions" in en.body
    assert "others remain" in en.sms
    v = variables("released", "en", probation_until=None, still_restricted=False)
    clear = render("released", "en", v)
    assert "large transactions" not in clear.body
    assert "others remain" not in clear.sms


def test_the_sla_reminder_apologises_and_says_the_appeal_is_escalated() -> None:
    en = render("sla_reminder", "en", variables("sla_reminder", "en")).body
    zh = render("sla_reminder", "zh-CN", variables("sla_reminder", "zh-CN")).body
    assert "sorry" in en.lower()
    assert "escalated" in en
    assert "抱歉" in zh
    assert "升级处理" in zh


def test_the_four_eyes_notice_asks_for_a_different_second_approver() -> None:
    en = render("staff_four_eyes_waiting", "en", variables("staff_four_eyes_waiting", "en")).body
    assert "someone other than rev_017" in en
    zh = render("staff_four_eyes_waiting", "zh-CN", variables("staff_four_eyes_waiting", "zh-CN")).body
    assert "第二审批人不能是 rev_017" in zh


@pytest.mark.parametrize("sparse", [False, True], ids=["all-options", "no-options"])
@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_sms_stays_within_70_chinese_and_160_english_characters(name: str, sparse: bool) -> None:
    for lang, limit in (("zh-CN", 70), ("en", 160)):
        v = variables(name, lang, **(SPARSE.get(name, {}) if sparse else {}))
        sms = render(name, lang, v).sms
        assert len(sms) <= limit, (lang, len(sms), sms)


def test_an_unknown_template_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no_such_template"):
        render("no_such_template", "en", variables("in_review", "en"))


@pytest.mark.parametrize("lang", ["fr", "zh", "zh-cn", "EN", ""])
def test_an_unknown_language_is_a_value_error(lang: str) -> None:
    with pytest.raises(ValueError, match="language"):
        render("in_review", lang, variables("in_review", "en"))


@pytest.mark.parametrize("lang", LANGS)
def test_a_missing_variable_is_an_error_not_a_blank(lang: str) -> None:
    v = variables("frozen", lang)
    del v["reason"]
    with pytest.raises(jinja2.UndefinedError):
        render("frozen", lang, v)


def test_a_missing_variable_used_only_in_the_sms_is_still_an_error() -> None:
    v = variables("verification_code", "en")
    del v["code"]
    with pytest.raises(jinja2.UndefinedError):
        render("verification_code", "en", v)
