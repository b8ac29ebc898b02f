"""Numbered donor receipts (zh-CN and en), printable HTML. Pure: a donation in, HTML out.

A receipt shows the donor's own name: it is theirs. Nothing else of theirs (contact) appears.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from services.common.reference import Reference

_ENV = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)

TEXTS = {
    "zh-CN": {"title": "捐赠收据", "no": "收据编号", "donor": "捐赠方", "date": "接收日期",
              "item": "物资", "quantity": "数量", "location": "入库地点", "value": "价值（元）",
              "method": "估值方式", "programme": "服务计划", "unvalued": "未计价值",
              "methods": {"declared": "申报价值", "market": "市场价值",
                          "donor_stated": "捐赠方声明价值", None: "申报价值"},
              "thanks": "感谢您对社区抗疫工作的支持！本收据由联盟依据入库记录出具。",
              "issuer": "青益+社创抗疫联盟"},
    "en": {"title": "Donation receipt", "no": "Receipt no.", "donor": "Donor",
           "date": "Received on", "item": "Item", "quantity": "Quantity",
           "location": "Warehouse", "value": "Value (yuan)", "method": "Valuation",
           "programme": "Programme",
           "methods": {"declared": "declared value", "market": "market value",
                       "donor_stated": "value stated by the donor", None: "declared value"},
           "unvalued": "not valued",
           "thanks": "Thank you for supporting the communities' relief work. This receipt is "
                     "issued by the coalition from its intake records.",
           "issuer": "Qingyi+ Social Innovation Relief Coalition"},
}

UNITS = {
    "zh-CN": {"piece": "件", "pair": "双", "box": "箱", "jin": "斤", "kg": "公斤", "t": "吨",
              "policy": "份", "card": "张", "yuan": "元"},
    "en": {"piece": "pieces", "pair": "pairs", "box": "boxes", "policy": "policies",
           "card": "cards"},
}

_TEMPLATE = _ENV.from_string("""<!DOCTYPE html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<title>{{ t.title }} {{ r.receipt_no }}</title>
<style>body{font-family:serif;max-width:40em;margin:2em auto}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #333;padding:.3em .5em;text-align:left}</style>
</head><body>
<h1>{{ t.title }}</h1>
<p>{{ t.no }}: <strong>{{ r.receipt_no }}</strong></p>
<p>{{ t.donor }}: {{ r.donor }}</p>
<p>{{ t.date }}: {{ r.date }}</p>
<table>
<tr><th>{{ t.item }}</th><th>{{ t.quantity }}</th><th>{{ t.location }}</th>
<th>{{ t.value }}</th><th>{{ t.method }}</th></tr>
<tr><td>{{ r.item }}</td><td>{{ r.quantity }}</td><td>{{ r.location }}</td>
<td>{{ r.value }}</td><td>{{ r.method }}</td></tr>
</table>
{% if r.programme %}<p>{{ t.programme }}: {{ r.programme }}</p>{% endif %}
<p>{{ t.thanks }}</p>
<p style="text-align:right">{{ t.issuer }}</p>
</body></html>
""")


def _quantity(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.3f}".rstrip("0")


def _boxes(donation: dict[str, Any], lang: str) -> str:
    """How the goods came packed, when they are counted in what the boxes held."""
    if not donation.get("boxes"):
        return ""
    box = UNITS[lang].get("box", "box")
    unit = UNITS[lang].get(donation["box_unit"], donation["box_unit"])
    size = f"{_quantity(donation['box_size'])} {unit}"
    if lang == "zh-CN":
        return f"（{_quantity(donation['boxes'])} {box}，每{box} {size}）"
    return f" ({_quantity(donation['boxes'])} {box}, {size} each)"


def receipt_number(year: int, n: int) -> str:
    return f"JZ-{year}-{n:06d}"


def render(donation: dict[str, Any], ref: Reference, lang: str = "zh-CN") -> str:
    """The printable receipt of one received donation."""
    if lang not in TEXTS:
        raise ValueError("lang must be zh-CN or en")
    t = TEXTS[lang]
    zh = lang == "zh-CN"
    cat = ref.catalogue.get(donation["category"])
    area = ref.areas.areas.get(donation["location_id"])
    received = donation.get("received_at")
    unit = UNITS[lang].get(donation["unit"], donation["unit"])
    r = {
        "receipt_no": donation["receipt_no"],
        "donor": donation["donor"]["name"],
        "date": received.date().isoformat() if received else "",
        "item": (cat.name if zh else cat.name_en) if cat else donation["category"],
        "quantity": f"{_quantity(donation['quantity'])} {unit}" + _boxes(donation, lang),
        "location": (area.name if zh else area.name_en) if area else donation["location_id"],
        "value": (f"{donation['value_yuan']:,.2f}" if donation.get("value_known", True)
                  else t.get("unvalued", "-")),
        "method": t["methods"].get(donation.get("value_method")),
        "programme": donation.get("programme"),
    }
    return _TEMPLATE.render(t=t, r=r, lang=lang)
