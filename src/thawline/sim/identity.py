"""Synthetic but valid-looking holder identities: Chinese names, resident IDs, mobile numbers, bank cards.

Every identifier passes the checks the API applies at registration (python-stdnum's ``cn.ric``,
``phonenumbers`` for CN mobiles, the Luhn check for cards), and none belongs to a real person
except by coincidence of digits. The check digits are computed here (GB 11643-1999 for resident IDs,
ISO/IEC 7812 Luhn for cards) so the generator needs no validation library. Every value is drawn once:
:class:`IdentityFactory` never repeats a resident ID, a phone number or a card number.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "东方", "令狐", "慕容", "皇甫")
GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍鹏辉玲建国建华志强晨"
    "宇浩然子涵欣怡梓轩雨桐一诺思远佳怡俊杰文博天佑语嫣嘉懿瑞霖梦琪晓雪婷婷雅琴博文宏"
    "伟立新海燕春梅秋菊冬雪红梅永刚振华"
)

# GB/T 2260 county codes with the first birth year python-stdnum's register accepts for each.
RIC_REGIONS: tuple[tuple[str, int], ...] = (
    ("110101", 1955),  # 北京 东城
    ("110105", 1955),  # 北京 朝阳
    ("110108", 1955),  # 北京 海淀
    ("310101", 1955),  # 上海 黄浦
    ("310104", 1955),  # 上海 徐汇
    ("310105", 1955),  # 上海 长宁
    ("310107", 1955),  # 上海 普陀
    ("310110", 1955),  # 上海 杨浦
    ("310112", 1981),  # 上海 闵行
    ("120101", 1955),  # 天津 和平
    ("120103", 1955),  # 天津 河西
    ("440103", 1983),  # 广州 荔湾
    ("440104", 1983),  # 广州 越秀
    ("440106", 1985),  # 广州 天河
    ("440303", 1983),  # 深圳 罗湖
    ("440304", 1983),  # 深圳 福田
    ("440305", 1983),  # 深圳 南山
    ("440306", 1992),  # 深圳 宝安
    ("330102", 1983),  # 杭州 上城
    ("330106", 1983),  # 杭州 西湖
    ("330108", 1996),  # 杭州 滨江
    ("510104", 1990),  # 成都 锦江
    ("510107", 1990),  # 成都 武侯
    ("420102", 1983),  # 武汉 江岸
    ("420106", 1983),  # 武汉 武昌
    ("320102", 1983),  # 南京 玄武
    ("320106", 1983),  # 南京 鼓楼
    ("610103", 1983),  # 西安 碑林
    ("610113", 1983),  # 西安 雁塔
    ("350203", 1983),  # 厦门 思明
    ("370202", 1983),  # 青岛 市南
    ("210102", 1983),  # 沈阳 和平
    ("410105", 1983),  # 郑州 金水
    ("430103", 1983),  # 长沙 天心
    ("500103", 1997),  # 重庆 渝中
)
RIC_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))

# Mobile prefixes of the three large carriers; 170/171 (virtual operators) are kept for attackers.
HOLDER_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)
ATTACKER_MOBILE_PREFIXES = ("170", "171")

# UnionPay issuer prefixes (ICBC, ABC, CCB, CMB, BOCOM, BOC, PSBC) and their card lengths.
CARD_BINS: tuple[tuple[str, int], ...] = (
    ("622202", 19),
    ("622848", 19),
    ("621700", 19),
    ("622588", 16),
    ("621483", 16),
    ("622260", 19),
    ("621661", 19),
    ("621799", 19),
    ("625965", 16),
)


def ric_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character of the first 17 digits of a resident ID (``0``-``9`` or ``X``)."""
    total = sum(int(d) * w for d, w in zip(first17, RIC_WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def luhn_check_digit(partial: str) -> str:
    """The Luhn digit to append to ``partial`` so the whole number passes the check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # doubled: these positions are odd-numbered once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (digits only) passes the Luhn check."""
    return number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


@dataclass(slots=True)
class IdentityFactory:
    """Draws unique identities from one random stream."""

    rng: random.Random
    _rics: set[str] = field(default_factory=set)
    _phones: set[str] = field(default_factory=set)
    _cards: set[str] = field(default_factory=set)

    def name(self) -> str:
        """A Chinese name: a surname (rarely a compound one) and one or two given characters."""
        rng = self.rng
        surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.02 else rng.choice(SURNAMES)
        given = "".join(rng.choice(GIVEN_CHARS) for _ in range(1 if rng.random() < 0.3 else 2))
        return surname + given

    def resident_id(self, province: str | None = None) -> str:
        """An 18-character resident ID; the birthplace is in ``province`` (two digits) when one fits."""
        rng = self.rng
        while True:
            born = date(1966, 1, 1) + timedelta(days=rng.randrange(39 * 365))
            regions = [code for code, first in RIC_REGIONS if first <= born.year]
            local = [code for code in regions if province and code.startswith(province)]
            region = rng.choice(local if local and rng.random() < 0.7 else regions)
            first17 = f"{region}{born:%Y%m%d}{rng.randrange(1, 1000):03d}"
            ric = first17 + ric_check_digit(first17)
            if ric not in self._rics:
                self._rics.add(ric)
                return ric

    def phone(self, *, attacker: bool = False) -> str:
        """A CN mobile number in E.164 form (``+86…``); attackers' numbers use virtual-operator prefixes."""
        prefixes = ATTACKER_MOBILE_PREFIXES if attacker else HOLDER_MOBILE_PREFIXES
        while True:
            number = f"+86{self.rng.choice(prefixes)}{self.rng.randrange(10**8):08d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def bank_card(self) -> str:
        """A UnionPay-style card number (16 or 19 digits) passing the Luhn check."""
        while True:
            bin_, length = self.rng.choice(CARD_BINS)
            body = bin_ + "".join(str(self.rng.randrange(10)) for _ in range(length - len(bin_) - 1))
            card = body + luhn_check_digit(body)
            if card not in self._cards:
                self._cards.add(card)
                return card
