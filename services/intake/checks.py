"""Intake's checks of what the contract schema cannot know: areas, categories, units."""

from __future__ import annotations

from services.common import contract, units
from services.common.reference import Reference


def check_references(event: contract.Event, ref: Reference) -> None:
    """Raise ContractError if the event names an unknown area or category, or a unit that
    does not measure what its category is counted in."""
    data = event.data
    problems: dict[str, str] = {}
    for key in ("community_id", "home_community_id"):
        if key in data and not ref.areas.is_community(data[key]):
            problems[f"data.{key}"] = f"unknown community {data[key]!r}"
    if "location_id" in data and data["location_id"] not in ref.areas:
        problems["data.location_id"] = f"unknown area {data['location_id']!r}"
    if "category" in data:
        category = ref.catalogue.get(data["category"])
        if category is None:
            problems["data.category"] = f"unknown category {data['category']!r}"
        else:
            if "kind" in data and data["kind"] != category.kind:
                problems["data.kind"] = (
                    f"category {category.id!r} is a {category.kind}, not {data['kind']}")
            if "unit" in data and not units.compatible(data["unit"], category.unit):
                boxed = units.dimension(data["unit"]) == "box"
                if boxed and data.get("box_unit"):
                    if not units.compatible(data["box_unit"], category.unit):
                        problems["data.box_unit"] = (
                            f"{data['box_unit']!r} does not measure {category.id!r} "
                            f"(counted in {category.unit})")
                elif boxed:
                    problems["data.unit"] = (
                        f"{category.id!r} is counted in {category.unit}: declare what one box "
                        f"holds (box_size, box_unit)")
                else:
                    problems["data.unit"] = (
                        f"{data['unit']!r} does not measure {category.id!r} "
                        f"(counted in {category.unit})")
    if problems:
        raise contract.ContractError(
            ", ".join(f"{k}: {v}" for k, v in sorted(problems.items())), problems)
