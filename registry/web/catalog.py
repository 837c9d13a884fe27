"""Every word the working group's page shows, in English and Chinese, and how a language is chosen.

The page speaks the language a reader asks for (``?lang=zh|en``, then the ``lang`` cookie the
page sets, then the browser's ``Accept-Language``), English when nothing says otherwise. Two kinds
of words live here: the page's own labels (``LABELS``), and the registry's vocabulary values
(``TERMS``: case kinds, stages, permit kinds, offices, ...), which the page shows in the reader's
language beside the identifier the data files and the API use, so both readers and the command
line name the same thing. A value with no entry (an unknown use, a department id) is shown as
written. A missing label is a programming error and raises ``KeyError`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "LABELS",
    "LANGUAGES",
    "TERMS",
    "Language",
    "Words",
    "choose_language",
]

Language = Literal["en", "zh"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "zh")
DEFAULT_LANGUAGE: Final[Language] = "en"

LABELS: Final[dict[str, tuple[str, str]]] = {
    # (English, Chinese)
    "site_title": ("Illegal construction: working group", "违法建设查处联席会议工作小组"),
    "nav_flagged": ("Flagged structures", "违法建设"),
    "nav_inbox": ("Inbox", "收件箱"),
    "nav_overdue": ("Overdue referrals", "逾期移送"),
    "nav_figures": ("Monthly figures", "月度统计"),
    "nav_search": ("Search", "查询"),
    "language": ("Language", "语言"),
    "flagged_title": (
        "Flagged structures (a blocking case)",
        "违法建设：有阻断案件的建筑",
    ),
    "flagged_none": ("No structure has a blocking case.", "目前没有有阻断案件的建筑。"),
    "flagged_count": ("structures flagged", "栋建筑被标记"),
    "structure": ("Structure", "建筑"),
    "structure_id": ("Structure id", "建筑编号"),
    "address": ("Address", "地址"),
    "district": ("District", "区县"),
    "area": ("Area", "区域"),
    "declared_use": ("Declared use", "申报用途"),
    "status": ("Status", "状态"),
    "cases": ("Cases", "案件"),
    "case": ("Case", "案件"),
    "case_id": ("Case id", "案件编号"),
    "kind": ("Kind", "类型"),
    "stage": ("Stage", "阶段"),
    "source": ("Source", "线索来源"),
    "opened": ("Found", "发现时间"),
    "party": ("Party", "当事人"),
    "party_suspended": ("Suspended (Art. 22)", "已暂停受理（第二十二条）"),
    "permits": ("Permits", "许可证件"),
    "permit_id": ("Permit id", "证件编号"),
    "issued": ("Issued", "核发日期"),
    "expires": ("Expires", "有效期至"),
    "use": ("Use", "用途"),
    "no_permits": ("No permit on record.", "没有许可证件记录。"),
    "no_cases": ("No case on record.", "没有案件记录。"),
    "status_flagged": ("Flagged: a blocking case", "违法建设：有阻断案件"),
    "status_pending": ("A reported lead is being checked", "线索待核实"),
    "status_clear": ("No open case", "无未结案件"),
    "page_of": ("Page {page} of {pages}", "第 {page} 页，共 {pages} 页"),
    "previous": ("Previous", "上一页"),
    "next": ("Next", "下一页"),
    "inbox_title": ("Inbox: notices and referrals", "收件箱：通报与移送"),
    "notices": ("Notices from licensing offices (Art. 13)", "职能部门通报（第十三条）"),
    "notice": ("Notice", "通报"),
    "notice_id": ("Notice id", "通报编号"),
    "office": ("Office", "部门"),
    "reasons": ("Reasons", "原因"),
    "received": ("Received", "收到时间"),
    "acknowledged": ("Acknowledged", "已确认"),
    "no_notices": ("No notice matches.", "没有符合条件的通报。"),
    "referrals": ("Referrals between departments (Art. 19)", "部门间移送（第十九条）"),
    "found_by": ("Found by", "发现部门"),
    "referred_to": ("Referred to", "移送至"),
    "referral_due": ("Refer by", "移送期限"),
    "referred_at": ("Referred", "移送时间"),
    "decision": ("Decision", "处理决定"),
    "answer_due": ("Report back by", "反馈期限"),
    "answered_at": ("Reported back", "反馈时间"),
    "state": ("State", "状态"),
    "overdue": ("Overdue", "逾期"),
    "no_referrals": ("No referral matches.", "没有符合条件的移送。"),
    "filter": ("Filter", "筛选"),
    "any": ("any", "全部"),
    "age_days": ("At least this many days old", "至少已有天数"),
    "apply": ("Apply", "确定"),
    "overdue_title": ("Overdue referrals", "逾期移送"),
    "overdue_by_department": ("Overdue, per department", "各部门逾期数"),
    "department": ("Department", "部门"),
    "count": ("Count", "数量"),
    "no_overdue": ("No referral is overdue.", "没有逾期的移送。"),
    "figures_title": ("Monthly figures", "月度统计"),
    "month": ("Month", "月份"),
    "show": ("Show", "显示"),
    "section": ("Figure", "统计项"),
    "key": ("Item", "细目"),
    "value": ("Value", "数值"),
    "no_figures": ("No figures for this month.", "本月没有统计数据。"),
    "chart_title": ("The month's figures", "本月统计图"),
    "search_title": ("Search by structure id or address", "按建筑编号或地址查询"),
    "search_hint": (
        "A structure id (exact) or a part of an address.",
        "输入建筑编号（完整）或地址的一部分。",
    ),
    "search_button": ("Search", "查询"),
    "search_empty": (
        "Type a structure id or part of an address.",
        "请输入建筑编号或地址的一部分。",
    ),
    "search_too_long": (
        "The query is too long (at most {max} characters).",
        "查询内容过长（最多 {max} 个字符）。",
    ),
    "search_none": ("No structure matches “{q}”.", "没有与“{q}”匹配的建筑。"),
    "search_results": ("Structures matching “{q}”", "与“{q}”匹配的建筑"),
    "search_more": ("Only the first {n} are shown.", "仅显示前 {n} 条。"),
    "not_found_title": ("Not found", "未找到"),
    "not_found": ("There is no such page or structure.", "没有这个页面或建筑。"),
    "bad_request_title": ("Bad request", "请求有误"),
    "unavailable_title": ("Registry unavailable", "登记数据暂不可用"),
    "unavailable": (
        "The page cannot read the registry just now; try again shortly.",
        "暂时无法读取登记数据，请稍后再试。",
    ),
    "home": ("Back to the flagged structures", "返回违法建设列表"),
    "read_only": (
        "Read-only: changes are made by the departments' signed writes.",
        "只读页面：各部门通过签名写入变更数据。",
    ),
    "as_of": ("As of", "截至"),
}
"""The page's own labels: (English, Chinese)."""

TERMS: Final[dict[str, tuple[str, str]]] = {
    # Case kinds
    "illegal_land_use": ("Illegal land use", "违法用地"),
    "no_planning_permit": ("No construction planning permit", "未取得建设工程规划许可证"),
    "deviates_from_permit": ("Deviates from the permit", "未按规划许可内容建设"),
    "unauthorized_use_change": ("Use changed without approval", "擅自改变规划用途"),
    "temporary_overdue": ("Temporary building overdue", "临时建设逾期未拆除"),
    "post_registration_construction": (
        "Built after registration",
        "初始登记后擅自加建",
    ),
    "structural_damage": ("Load-bearing structure altered", "擅自变动主体和承重结构"),
    # Case stages
    "reported": ("Reported lead", "线索待核实"),
    "filed": ("Filed", "已立案"),
    "stop_order": ("Stop order", "责令停止建设"),
    "rectify_order": ("Rectify order", "责令限期改正"),
    "demolition_order": ("Demolition order", "责令限期拆除"),
    "rectified": ("Rectified", "已改正"),
    "demolished": ("Demolished", "已拆除"),
    "closed": ("Closed", "已结案"),
    "dismissed": ("Dismissed", "不予立案"),
    # Case sources
    "patrol": ("Patrol", "巡查"),
    "report": ("Report", "举报"),
    "petition": ("Petition", "信访"),
    "media": ("Media", "媒体"),
    "satellite": ("Satellite monitoring", "卫星遥感监测"),
    # Permit kinds
    "land_use_planning": ("Land-use planning permit", "建设用地规划许可证"),
    "land_certificate": ("State land-use certificate", "国有土地使用证"),
    "construction_planning": ("Construction planning permit", "建设工程规划许可证"),
    "temporary_construction_planning": (
        "Temporary construction planning permit",
        "临时建设工程规划许可证",
    ),
    "rural_construction_planning": ("Rural construction planning permit", "乡村建设规划许可证"),
    "construction_works": ("Construction works permit", "施工许可证"),
    "property_ownership": ("Property certificate", "不动产权证书"),
    # Permit statuses
    "valid": ("Valid", "有效"),
    "suspended": ("Suspended", "暂停"),
    "revoked": ("Revoked", "撤销"),
    # Areas
    "urban": ("Urban", "城镇"),
    "village": ("Village", "村庄"),
    # Offices
    "market_regulation": ("Market regulation", "市场监管"),
    "culture": ("Culture", "文化"),
    "health": ("Health", "卫生"),
    "tax": ("Tax", "税务"),
    "civil_defense": ("Civil defence", "人防"),
    "environment": ("Environmental protection", "环保"),
    "fire": ("Fire", "消防"),
    # Notice states
    "open": ("Open", "未确认"),
    "acknowledged": ("Acknowledged", "已确认"),
    # Referral states and lateness
    "awaiting_referral": ("Awaiting referral", "待移送"),
    "referred": ("Referred", "已移送"),
    "decided": ("Decided", "已作出决定"),
    "answered": ("Reported back", "已反馈"),
    "referral": ("Not referred in time", "未按时移送"),
    "answer": ("Decision not reported back in time", "未按时反馈处理决定"),
    # Report sections
    "cases_opened": ("Cases found", "新发现案件"),
    "cases_closed": ("Cases closed", "已结案件"),
    "open_blocking_cases": ("Open blocking cases", "未结阻断案件"),
    "checks": ("Checks", "核查"),
    "notices": ("Notices", "通报"),
    "overdue_referrals": ("Overdue referrals", "逾期移送"),
    "suspended_parties": ("Suspended parties", "被暂停受理的当事人"),
    # The monthly report's keys: kinds of caller, verdicts
    "utility": ("Utility", "市政公用"),
    "water": ("water", "供水"),
    "power": ("power", "供电"),
    "gas": ("gas", "供气"),
    "heat": ("heat", "供热"),
    "registration": ("Property registration", "不动产登记"),
    "office": ("Office", "职能部门"),
    "parties": ("Parties", "当事人"),
    "ALLOW": ("Allow", "准予"),
    "ALLOW_TEMPORARY": ("Allow for a time", "临时准予"),
    "NOTIFY": ("Notify", "通报"),
    "REVIEW": ("Review", "复核"),
    "DENY": ("Deny", "不予办理"),
    # Notice reason codes
    "MISSING_PERMIT": ("Permit missing", "缺少许可证件"),
    "PERMIT_EXPIRED": ("Permit expired", "许可证件已过期"),
    "PERMIT_SUSPENDED": ("Permit suspended", "许可证件已暂停"),
    "PERMIT_REVOKED": ("Permit revoked", "许可证件已撤销"),
    "NOT_IN_REGISTRY": ("Not in the registry", "未登记"),
    "STRUCTURE_FLAGGED": ("Structure flagged", "违法建设"),
    "CASE_PENDING": ("Case pending", "案件待核实"),
    "USE_MISMATCH": ("Use differs from the permit", "用途与许可不符"),
}
"""Vocabulary values: (English, Chinese), keyed by the identifier data files use."""


@dataclass(frozen=True)
class Words:
    """The words of one language, as templates use them: ``words.t("nav_inbox")`` and
    ``words.term("no_planning_permit")``."""

    lang: Language

    @property
    def other(self) -> Language:
        return "zh" if self.lang == "en" else "en"

    def t(self, label: str, **values: object) -> str:
        """A page label in this language (``KeyError`` for a label that does not exist)."""
        english, chinese = LABELS[label]
        text = chinese if self.lang == "zh" else english
        return text.format(**values) if values else text

    def term(self, value: str | None) -> str:
        """A vocabulary value in this language; a value the catalog does not know, as written."""
        if value is None:
            return ""
        names = TERMS.get(value)
        if names is None:
            return value
        return names[1] if self.lang == "zh" else names[0]

    def key(self, value: str) -> str:
        """A figure's key in this language: each part of ``kind/source`` or ``utility:water``
        named on its own (``No construction planning permit / Patrol``)."""
        return " / ".join(
            " ".join(self.term(word) for word in part.split(":")) for part in value.split("/")
        )

    def knows(self, value: str | None) -> bool:
        """True when ``value`` is a vocabulary value with names (so the page shows its id too)."""
        return value is not None and value in TERMS


def _accepted(header: str) -> list[tuple[float, str]]:
    """Accept-Language's tags with their weights, best first (RFC 9110 §12.5.4)."""
    weighted: list[tuple[float, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, number = param.strip().partition("=")
            if name == "q":
                try:
                    weight = float(number)
                except ValueError:
                    weight = 0.0
        if tag and weight > 0:
            weighted.append((weight - position * 1e-6, tag.strip().lower()))
    return sorted(weighted, reverse=True)


def choose_language(asked: str | None, remembered: str | None, accept: str | None) -> Language:
    """The page's language: ``?lang=``, else the cookie, else the browser's best English or
    Chinese, else English. Values other than ``en`` and ``zh`` are passed over."""
    for value in (asked, remembered):
        if value == "en":
            return "en"
        if value == "zh":
            return "zh"
    for _, tag in _accepted(accept or ""):
        primary = tag.split("-", 1)[0]
        if primary == "zh":
            return "zh"
        if primary == "en":
            return "en"
    return DEFAULT_LANGUAGE
