"""Who may do what, and where: the role and area policy alone, without broker or database."""

import pytest

from services.common import reference
from services.gateway import policy
from services.gateway.policy import Forbidden, authorise

TREE = reference.load("deploy/reference").areas


def account(role, area=None, organisation=None, permissions=()):
    return policy.for_account({"_id": f"{role}-1", "role": role, "area_id": area,
                               "organisation_id": organisation,
                               "permissions": list(permissions)}, "session:x")


def refused(principal, action, **kw):
    with pytest.raises(Forbidden) as info:
        authorise(principal, action, TREE, **kw)
    return info.value


def test_a_community_coordinator_posts_and_reads_for_their_community_only():
    c01 = account("community_coordinator", "QY-S01-C01")
    authorise(c01, "needs.post", TREE, area="QY-S01-C01")
    authorise(c01, "needs.read", TREE, area="QY-S01-C01")
    no = refused(c01, "needs.post", area="QY-S02-C01", what="post a need")
    assert "QY-S01-C01" in no.message and "QY-S02-C01" in no.message
    assert "post needs in QY-S01-C01 and below" in no.allowed
    refused(c01, "needs.read", area="QY-S01-C02")  # a sibling community
    refused(c01, "needs.post", area="QY-S01")  # the street above
    refused(c01, "needs.post", area="QY-S99-C01")  # no such area


def test_a_street_coordinator_acts_on_its_communities_and_the_district_on_all():
    s01 = account("street_coordinator", "QY-S01")
    authorise(s01, "hours.decide", TREE, area="QY-S01-C01")
    authorise(s01, "hours.decide", TREE, area="QY-S01")
    refused(s01, "hours.decide", area="QY-S02-C01")
    district = account("district_coordinator", "QY")
    for area in ("QY", "QY-S02", "QY-S12-C01"):
        authorise(district, "hours.decide", TREE, area=area)
    assert district.may("ledger.read") and not s01.may("ledger.read")


def test_an_organisation_acts_on_its_own_records_only():
    org = account("organisation", organisation="ORG-7")
    authorise(org, "donations.post", TREE, area="QY-S03", organisation="ORG-7")
    no = refused(org, "donations.post", area="QY-S03", organisation="ORG-8")
    assert "ORG-7" in no.message and "ORG-8" in no.message
    refused(org, "donations.post", area="QY-S03")  # a donor not named as its own
    refused(org, "needs.post", area="QY-S03-C01")
    refused(org, "hours.decide", area="QY-S03-C01")
    authorise(org, "status_reports.write", TREE, organisation="ORG-7")
    refused(org, "status_reports.write", organisation="ORG-8")


def test_on_call_reads_status_and_sends_dead_messages_again_only_when_permitted():
    on_call = account("on_call")
    authorise(on_call, "status.read", TREE)
    authorise(on_call, "notifications.read", TREE)
    no = refused(on_call, "notifications.retry")
    assert "read the queue status and the dashboard" in no.allowed
    refused(on_call, "needs.post", area="QY-S01-C01")
    authorise(account("on_call", permissions=["replay"]), "notifications.retry", TREE)


def test_only_admins_manage_accounts_and_read_the_audit_log():
    for role in policy.ROLES:
        principal = account(role, {"district_coordinator": "QY", "street_coordinator": "QY-S01",
                                   "community_coordinator": "QY-S01-C01"}.get(role),
                            "ORG-1" if role == "organisation" else None)
        assert principal.may("accounts.manage") is (role == "admin")
        assert principal.may("audit.read") is (role == "admin")
    assert policy.operator().may("accounts.manage")


def test_a_partner_key_does_what_its_scopes_say_where_its_areas_say():
    key = policy.for_key({"_id": "k1", "scopes": ["donation_received", "audit.read"],
                          "areas": ["QY-S05"]})
    authorise(key, "donations.post", TREE, area="QY-S05-C02")
    refused(key, "donations.post", area="QY-S06")
    no = refused(key, "ledger.read")
    assert no.allowed == ["record donations in QY-S05 and below"]
    assert not key.may("audit.read")  # keys never manage people or read the audit log
    everywhere = policy.for_key({"_id": "k2", "scopes": ["stock.read"]})
    authorise(everywhere, "stock.read", TREE, area="QY-S12-C01")


def test_stock_reaches_an_area_from_its_own_tier_and_the_tiers_above():
    areas = ("QY-S01-C01",)
    assert policy.reaches(areas, "QY-S01-C01", TREE)
    assert policy.reaches(areas, "QY-S01", TREE) and policy.reaches(areas, "QY", TREE)
    assert not policy.reaches(areas, "QY-S01-C02", TREE)
    assert not policy.reaches(areas, "QY-S02", TREE)
    assert not policy.reaches(areas, "nowhere", TREE)
    assert policy.reaches(None, "QY-S02", TREE)


def test_an_account_names_the_area_its_role_coordinates():
    check = policy.check_account
    assert check("street_coordinator", "QY-S01", None, TREE, TREE.tier) == {}
    assert "area_id" in check("street_coordinator", "QY-S01-C01", None, TREE, TREE.tier)
    assert "area_id" in check("community_coordinator", None, None, TREE, TREE.tier)
    assert "area_id" in check("on_call", "QY", None, TREE, TREE.tier)
    assert "organisation_id" in check("organisation", None, None, TREE, TREE.tier)
    assert check("organisation", None, "ORG-1", TREE, TREE.tier) == {}
