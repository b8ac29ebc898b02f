"""Message texts by language. Chinese first: the coalition's working language."""

from __future__ import annotations

from typing import Any

TEMPLATES: dict[str, dict[str, str]] = {
    "assignment_made": {
        "zh-CN": "您的需求 {need_id} 已匹配：{quantity:g} {unit} {category}，"
                 "由 {location_id} 仓库提供。",
        "en": "Your need {need_id} was matched: {quantity:g} {unit} of {category} "
              "from the {location_id} warehouse.",
    },
    "need_fulfilled": {
        "zh-CN": "您的需求 {need_id}（{quantity:g} {unit} {category}）已全部满足。",
        "en": "Your need {need_id} ({quantity:g} {unit} of {category}) is fully met.",
    },
}


def render(template: str, language: str, params: dict[str, Any]) -> str:
    texts = TEMPLATES[template]
    return texts.get(language, texts["zh-CN"]).format(**params)
