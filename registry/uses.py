"""Uses of land and buildings as categories, so declared and permitted uses compare by meaning.

A permit records a use as its issuer wrote it ("住宅", "Residential", "residential"), and an
applicant declares one the same way; Art. 13 asks whether the two agree. This module names the
categories of the national classification of land and building use (GB/T 21010《土地利用现状分类》
and the 《国土空间调查、规划、用途管制用地用海分类指南》), each with its Chinese names, its
English names and the common synonyms that mean exactly that category, and says which category a
written use is (``use_category``) and whether two uses agree (``same_use``).

A synonym is listed only when it means the same category, never when it names a kind within it:
"retail", "hotel" and "restaurant" are kinds of commercial use, "hospital" a kind of medical use,
"farmhouse" a rural dwelling; a permit for commercial use does not say that a hotel was allowed,
so folding a kind into its category would hide a real ``USE_MISMATCH``. Such words, and words of
classes wider than one category (商服用地, 公共管理与公共服务用地, 工矿用地, mixed uses such as
商住), stay unknown: kept as written and compared as text, as before there was a vocabulary.

Matching ignores case, character width, surrounding white space and runs of inner white space
(Unicode NFKC, case folding, then white space collapsed): "Ｒｅｓｉｄｅｎｔｉａｌ" and
" public   administration " are known. Pure: no storage, no transport.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

__all__ = [
    "USE_CATEGORIES",
    "UseCategory",
    "normalise_use",
    "same_use",
    "use_category",
]


@dataclass(frozen=True, slots=True)
class UseCategory:
    """One category of use: its id (what ``use_category`` returns), its English and Chinese
    names, and every other name that means it; all of them are matched."""

    id: str
    english: str
    chinese: str  # the national classification's class where one is exactly this category
    names: tuple[str, ...]


USE_CATEGORIES: Final[tuple[UseCategory, ...]] = (
    UseCategory(
        "residential",
        "residential",
        "居住用地",
        ("residential", "residence", "housing", "住宅", "居住", "住宅用地", "居住用地"),
    ),
    UseCategory(
        "commercial",
        "commercial",
        "商业用地",
        ("commercial", "商业", "商业用地", "商业用房"),
    ),
    UseCategory(
        "office",
        "office",
        "商务办公",
        (
            "office",
            "offices",
            "office building",
            "办公",
            "办公用房",
            "办公楼",
            "写字楼",
            "商务办公",
        ),
    ),
    UseCategory(
        "industrial",
        "industrial",
        "工业用地",
        ("industrial", "industry", "factory", "工业", "工业用地", "厂房", "工业厂房"),
    ),
    UseCategory(
        "warehouse",
        "warehouse",
        "仓储用地",
        ("warehouse", "warehousing", "仓储", "仓储用地", "仓库"),
    ),
    UseCategory(
        "education",
        "education",
        "教育用地",
        ("education", "educational", "school", "教育", "教育用地", "学校", "教育设施"),
    ),
    UseCategory(
        "research",
        "scientific research",
        "科研用地",
        ("research", "scientific research", "科研", "科研用地"),
    ),
    UseCategory(
        "medical",
        "medical and health care",
        "医疗卫生用地",
        ("medical", "health care", "healthcare", "医疗", "医疗卫生", "医疗卫生用地"),
    ),
    UseCategory(
        "social_welfare",
        "social welfare",
        "社会福利用地",
        ("social welfare", "social_welfare", "社会福利", "社会福利用地"),
    ),
    UseCategory(
        "public_administration",
        "public administration",
        "机关团体用地",
        (
            "public administration",
            "public_administration",
            "government",
            "机关团体",
            "机关团体用地",
            "行政办公",
            "行政办公用地",
        ),
    ),
    UseCategory(
        "culture",
        "culture",
        "文化用地",
        ("culture", "cultural", "文化", "文化用地", "文化设施", "文化设施用地"),
    ),
    UseCategory(
        "sports",
        "sports",
        "体育用地",
        ("sports", "sport", "体育", "体育用地", "体育设施"),
    ),
    UseCategory(
        "entertainment",
        "entertainment",
        "娱乐用地",
        ("entertainment", "娱乐", "娱乐用地"),
    ),
    UseCategory(
        "transport",
        "transport",
        "交通运输用地",
        ("transport", "transportation", "交通", "交通运输", "交通运输用地", "交通设施"),
    ),
    UseCategory(
        "public_utilities",
        "public utilities",
        "公用设施用地",
        ("public utilities", "public_utilities", "公用设施", "公用设施用地", "市政公用设施"),
    ),
    UseCategory(
        "agricultural",
        "agricultural",
        "农业设施建设用地",
        ("agricultural", "agriculture", "农业", "农用", "农用地", "农业用地", "农业设施"),
    ),
    UseCategory(
        "religious",
        "religious",
        "宗教用地",
        ("religious", "religion", "宗教", "宗教用地", "宗教活动场所", "宗教场所"),
    ),
)
"""The vocabulary, in the order of the national classification's classes where it has one."""


def normalise_use(text: str) -> str:
    """``text`` as the vocabulary is matched: NFKC, case-folded, white space collapsed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def _index(categories: tuple[UseCategory, ...]) -> Mapping[str, str]:
    """Every normalised name to its category's id; a name in two categories is a bug."""
    index: dict[str, str] = {}
    for category in categories:
        for name in (category.id, category.english, category.chinese, *category.names):
            key = normalise_use(name)
            if index.setdefault(key, category.id) != category.id:
                raise ValueError(f"use name {name!r} is in {index[key]!r} and {category.id!r}")
    return MappingProxyType(index)


_CATEGORY_OF: Final[Mapping[str, str]] = _index(USE_CATEGORIES)


@lru_cache(maxsize=4096)
def use_category(text: str) -> str | None:
    """The id of the category ``text`` names ("住宅" -> "residential"), or None if unknown.

    Remembers the last few thousand texts it was asked about: the gate asks on every premises
    check, mostly about the same few uses.
    """
    return _CATEGORY_OF.get(normalise_use(text))


def same_use(a: str, b: str) -> bool:
    """Whether two written uses agree: by category when both are known, else as text.

    Two known uses agree when their categories are the same. Otherwise (either is unknown) they
    agree when they are the same text ignoring case and surrounding white space, the comparison
    uses had before the vocabulary; so a known use never agrees with an unknown one except by
    that text.
    """
    category_a, category_b = use_category(a), use_category(b)
    if category_a is not None and category_b is not None:
        return category_a == category_b
    return a.strip().casefold() == b.strip().casefold()
