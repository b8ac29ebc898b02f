from services.common import reference


def test_sample_district_has_the_coalitions_shape():
    ref = reference.load("deploy/reference")
    tiers = [a.tier for a in ref.areas.areas.values()]
    assert tiers.count("district") == 1
    assert tiers.count("street") == 12
    assert tiers.count("community") == 79


def test_chain_goes_community_street_district():
    ref = reference.load("deploy/reference")
    assert ref.areas.chain("QY-S03-C02") == ["QY-S03-C02", "QY-S03", "QY"]
    tree = ref.areas.tree()
    assert tree[0]["id"] == "QY" and len(tree[0]["children"]) == 12


def test_catalogue_units_are_known():
    ref = reference.load("deploy/reference")
    assert ref.catalogue.get("disinfectant").unit == "jin"
    assert ref.catalogue.get("counselling").kind == "service"
