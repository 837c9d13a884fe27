"""The use vocabulary (``registry/uses.py``) as tables: names to categories, and uses compared.

Known names in every spelling a person or a spreadsheet produces (case, full width, white space
around and inside) give their category; kinds within a category and classes wider than one stay
unknown, because a permit for the category does not allow every kind in it. Two uses agree by
category when both are known, else by the comparison uses had before (case and surrounding white
space ignored).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.uses import USE_CATEGORIES, UseCategory, _index, normalise_use, same_use, use_category

# (written use, its category)
KNOWN = [
    ("residential", "residential"),
    ("Residential", "residential"),
    ("  RESIDENTIAL\t", "residential"),
    ("Ｒｅｓｉｄｅｎｔｉａｌ", "residential"),
    ("住宅", "residential"),
    ("居住", "residential"),
    ("住宅用地", "residential"),
    ("\u3000住宅\u3000", "residential"),
    ("housing", "residential"),
    ("商业", "commercial"),
    ("Commercial", "commercial"),
    ("办公", "office"),
    ("写字楼", "office"),
    ("Office  Building", "office"),
    ("工业", "industrial"),
    ("厂房", "industrial"),
    ("仓储", "warehouse"),
    ("仓库", "warehouse"),
    ("WAREHOUSE", "warehouse"),
    ("教育", "education"),
    ("学校", "education"),
    ("school", "education"),
    ("科研", "research"),
    ("医疗", "medical"),
    ("医疗卫生", "medical"),
    ("Health Care", "medical"),
    ("社会福利", "social_welfare"),
    ("机关团体", "public_administration"),
    ("行政办公", "public_administration"),
    ("public   administration", "public_administration"),
    ("Public_Administration", "public_administration"),
    ("文化", "culture"),
    ("体育", "sports"),
    ("娱乐", "entertainment"),
    ("交通运输", "transport"),
    ("公用设施", "public_utilities"),
    ("农业", "agricultural"),
    ("农用地", "agricultural"),
    ("宗教", "religious"),
    ("宗教活动场所", "religious"),
]

# Kinds within a category, classes wider than one, mixed uses, misspellings: none is a category.
UNKNOWN = [
    "retail",  # a kind of commercial use
    "shop",
    "hotel",
    "restaurant",
    "零售",
    "餐饮",
    "旅馆",
    "hospital",  # a kind of medical use
    "医院",
    "clinic",
    "karaoke",  # a kind of entertainment
    "farmhouse",  # a rural dwelling
    "apartment",
    "公寓",
    "商服用地",  # commercial and office and more
    "商业服务业用地",
    "公共管理与公共服务用地",  # education, medical, culture, ... together
    "工矿用地",  # industrial and mining together
    "商住",  # mixed
    "mixed use",
    "综合",
    "residental",  # misspelt
    "住宅楼",
    "卫生",  # health, or sanitation (a public utility)
    "",
    "   ",
]


@pytest.mark.parametrize(("text", "category"), KNOWN, ids=[row[0] for row in KNOWN])
def test_known_use(text: str, category: str) -> None:
    assert use_category(text) == category


@pytest.mark.parametrize("text", UNKNOWN)
def test_unknown_use(text: str) -> None:
    assert use_category(text) is None


def test_every_name_of_every_category_is_its_own() -> None:
    for category in USE_CATEGORIES:
        for name in (category.id, category.english, category.chinese, *category.names):
            assert use_category(name) == category.id, name
            assert use_category(f" {name.upper()} ") == category.id, name


def test_the_vocabulary_follows_the_national_classes() -> None:
    ids = [category.id for category in USE_CATEGORIES]
    assert len(ids) == len(set(ids))
    assert {"residential", "commercial", "office", "industrial", "warehouse"} <= set(ids)
    assert {"education", "medical", "public_administration", "transport"} <= set(ids)
    assert {"agricultural", "religious", "culture", "sports"} <= set(ids)
    for category in USE_CATEGORIES:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in category.chinese), category.id


def test_a_name_in_two_categories_is_refused() -> None:
    clash = (
        UseCategory("a", "first", "甲", ("shared",)),
        UseCategory("b", "second", "乙", ("SHARED ",)),
    )
    with pytest.raises(ValueError, match="use name 'SHARED ' is in 'a' and 'b'"):
        _index(clash)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("  Public\t\u3000Administration ", "public administration"),
        ("Ｏｆｆｉｃｅ", "office"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("住宅", "住宅"),
    ],
)
def test_normalise_use(text: str, normalised: str) -> None:
    assert normalise_use(text) == normalised


# (a, b, agree?)
COMPARED = [
    ("住宅", "residential", True),
    ("Ｒｅｓｉｄｅｎｔｉａｌ", "residential", True),
    ("居住", "住宅", True),
    ("仓库", "Warehouse", True),
    ("商业", "residential", False),
    ("commercial", "office", False),
    ("行政办公", "办公", False),  # public administration is not office
    ("文化", "体育", False),  # two national classes, two categories
    ("retail", "commercial", False),  # unknown against known: text
    ("hotel", "商业", False),
    ("residential", "residental", False),
    ("shop", "shop", True),  # unknown against unknown: text
    (" Shop ", "SHOP", True),
    ("STRASSE", "straße", True),
    ("retail shop", "retail  shop", False),  # inner white space of unknown uses counts
    ("ｋａｒａｏｋｅ", "karaoke", False),  # and width too
    ("shop", "store", False),
]


@pytest.mark.parametrize(("a", "b", "agree"), COMPARED, ids=[f"{a}|{b}" for a, b, _ in COMPARED])
def test_same_use(a: str, b: str, agree: bool) -> None:
    assert same_use(a, b) is agree
    assert same_use(b, a) is agree


_NAMES = [name for category in USE_CATEGORIES for name in category.names]


@given(st.one_of(st.sampled_from(_NAMES), st.text(max_size=12)), st.text(max_size=12))
def test_same_use_keeps_the_old_rule_unless_both_are_known(a: str, b: str) -> None:
    old = a.strip().casefold() == b.strip().casefold()
    if use_category(a) is None or use_category(b) is None:
        assert same_use(a, b) is old
    else:
        assert same_use(a, b) is (use_category(a) == use_category(b))
        assert not old or same_use(a, b)  # the vocabulary never splits what the old rule joined
    assert same_use(a, a)
