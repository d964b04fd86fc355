"""A DNS hosting service through fulfil's real operations engine, on a real PowerDNS,
checked in DNS itself."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

RECORDS = [
    {"name": "@", "type": "A", "content": "192.0.2.10"},
    {"name": "www", "type": "A", "content": "192.0.2.11"},
    {"name": "@", "type": "MX", "content": "10 mail.provider.example"},
    {"name": "@", "type": "TXT", "content": "v=spf1 mx -all"},
]
ADDONS = {"records": {"min": 1, "max": 50, "default": 10}}


def dnshosting_plugin():
    """The plugin as fulfil finds it: through its entry point."""
    (ep,) = entry_points(group="fulfil.modules", name="dnshosting")
    return ep.load()


@pytest.fixture
def harness(module_harness, settings):
    return module_harness("dnshosting", dnshosting_plugin(), settings=settings, addons=ADDONS)


def answers(pdns, domain):
    """What the world sees of the zone."""
    return {
        "apex A": pdns.query(domain, "A"),
        "www A": pdns.query(f"www.{domain}", "A"),
        "MX": pdns.query(domain, "MX"),
        "TXT": pdns.query(domain, "TXT"),
        "NS": pdns.query(domain, "NS"),
    }


def open_service(harness, domain, records=RECORDS, addons=None):
    sid = harness.order(params={"domain": domain, "records": records}, addons=addons)
    harness.run()
    return sid


def test_ordering_creates_a_zone_that_answers_in_dns(harness, pdns, domain):
    sid = open_service(harness, domain.upper() + ".")

    service = harness.service(sid)
    assert service["status"] == "active"
    assert service["params"]["domain"] == domain
    assert service["params"]["nameservers"] == ["ns1.fulfil-test.net", "ns2.fulfil-test.net"]
    assert service["remote_id"] == f"{domain}."
    assert harness.tasks(sid) == []
    assert answers(pdns, domain) == {
        "apex A": ("NOERROR", ["192.0.2.10"]),
        "www A": ("NOERROR", ["192.0.2.11"]),
        "MX": ("NOERROR", ["10 mail.provider.example."]),
        "TXT": ("NOERROR", ['"v=spf1 mx -all"']),
        "NS": ("NOERROR", ["ns1.fulfil-test.net.", "ns2.fulfil-test.net."]),
    }
    rcode, (soa,) = pdns.query(domain, "SOA")
    assert soa.startswith(f"ns1.fulfil-test.net. hostmaster.{domain}. ")
    zone = pdns.zone(domain)
    assert (zone["kind"], zone["account"]) == ("Native", f"fulfil:service:{sid}")


def test_suspend_silences_the_zone_and_resume_restores_the_same_answers(harness, pdns, domain):
    sid = open_service(harness, domain)
    before = answers(pdns, domain)

    harness.suspend(sid)
    harness.run()

    assert harness.service(sid)["status"] == "suspended"
    for rcode, data in answers(pdns, domain).values():
        assert (rcode, data) == ("REFUSED", [])
    assert pdns.query(domain, "SOA") == ("REFUSED", [])
    zone = pdns.zone(domain)
    assert all(r["disabled"] for rrset in zone["rrsets"] for r in rrset["records"])
    marker = pdns.api("GET", f"/zones/{domain}./metadata/X-FULFIL-SUSPENDED").json()["metadata"]
    assert json.loads(marker[0])["disabled"] == []

    harness.resume(sid)
    harness.run()

    assert harness.service(sid)["status"] == "active"
    assert answers(pdns, domain) == before
    assert pdns.api("GET", f"/zones/{domain}./metadata/X-FULFIL-SUSPENDED").json()["metadata"] == []
    assert harness.tasks(sid) == []


def test_a_record_disabled_before_suspension_stays_disabled_after_resume(harness, pdns, domain):
    sid = open_service(harness, domain)
    # staff switched www off in PowerDNS by hand
    pdns.api("PATCH", f"/zones/{domain}.", json={"rrsets": [{
        "name": f"www.{domain}.", "type": "A", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": "192.0.2.11", "disabled": True}],
    }]}).raise_for_status()
    assert pdns.query(f"www.{domain}")[1] == []

    harness.suspend(sid)
    harness.run()
    harness.resume(sid)
    harness.run()

    assert pdns.query(domain) == ("NOERROR", ["192.0.2.10"])
    assert pdns.query(f"www.{domain}")[1] == []


def test_repeated_suspend_and_resume_change_nothing_more(harness, settings, pdns, domain):
    """The engine may call a hook again after a crash: the second call finds the
    marker (or its absence) and succeeds without undoing anything."""
    sid = open_service(harness, domain)
    harness.suspend(sid)
    harness.run()
    plugin = dnshosting_plugin()()
    again = plugin.fulfil_suspend(_ctx(harness, settings, harness.service(sid), "suspend"))
    assert again.message == f"zone {domain} suspended: every record disabled, SOA included"
    assert pdns.query(domain)[0] == "REFUSED"

    harness.resume(sid)
    harness.run()
    again = plugin.fulfil_resume(_ctx(harness, settings, harness.service(sid), "resume"))
    assert again.message == f"zone {domain} was not suspended: nothing to restore"
    assert pdns.query(domain) == ("NOERROR", ["192.0.2.10"])


def test_edit_adds_changes_and_removes_records(harness, pdns, domain):
    sid = open_service(harness, domain)

    harness.edit(sid, params={"records": [
        {"name": "@", "type": "A", "content": "192.0.2.20"},
        {"name": "api", "type": "AAAA", "content": "2001:db8::1", "ttl": 600},
        {"name": "@", "type": "TXT", "content": "v=spf1 mx -all"},
    ]})
    harness.run()

    assert harness.service(sid)["status"] == "active"
    assert pdns.query(domain) == ("NOERROR", ["192.0.2.20"])
    assert pdns.query(f"api.{domain}", "AAAA") == ("NOERROR", ["2001:db8::1"])
    assert pdns.query(f"www.{domain}") == ("NXDOMAIN", [])
    assert pdns.query(domain, "MX") == ("NOERROR", [])
    assert pdns.query(domain, "NS")[1] == ["ns1.fulfil-test.net.", "ns2.fulfil-test.net."]
    assert harness.tasks(sid) == []


def test_long_and_quoted_txt_records_answer_as_given(harness, pdns, domain):
    long_text = "v=DKIM1; k=rsa; p=" + "A" * 400
    quoted = 'say "hi" \\ then leave'
    open_service(harness, domain, records=[
        {"name": "sel._domainkey", "type": "TXT", "content": long_text},
        {"name": "@", "type": "TXT", "content": quoted},
    ])

    assert pdns.txt(f"sel._domainkey.{domain}") == [long_text]
    assert pdns.txt(domain) == [quoted]


def test_edit_while_suspended_stays_silent_until_resume(harness, pdns, domain):
    sid = open_service(harness, domain)
    harness.suspend(sid)
    harness.run()

    harness.edit(sid, params={"records": RECORDS + [{"name": "new", "type": "A", "content": "192.0.2.30"}]})
    harness.run()

    assert harness.service(sid)["status"] == "suspended"
    assert pdns.query(f"new.{domain}")[0] == "REFUSED"
    harness.resume(sid)
    harness.run()
    assert pdns.query(f"new.{domain}") == ("NOERROR", ["192.0.2.30"])
    assert pdns.query(f"www.{domain}") == ("NOERROR", ["192.0.2.11"])


def test_close_deletes_the_zone(harness, pdns, domain):
    sid = open_service(harness, domain)

    harness.delete(sid)
    harness.run()

    assert harness.service(sid)["status"] == "deleted"
    assert pdns.zone(domain) is None
    assert pdns.query(domain)[0] == "REFUSED"


def test_close_of_a_zone_already_gone_is_a_success(harness, pdns, domain):
    sid = open_service(harness, domain)
    pdns.api("DELETE", f"/zones/{domain}.").raise_for_status()

    harness.delete(sid)
    harness.run()

    assert harness.service(sid)["status"] == "deleted"
    assert harness.tasks(sid) == []
    assert any("already gone" in h["message"] for h in harness.history(sid))


def test_a_zone_of_someone_else_becomes_a_setup_task_and_is_left_untouched(harness, pdns, domain):
    pdns.api("POST", "/zones", json={
        "name": f"{domain}.", "kind": "Native", "nameservers": ["ns.elsewhere.example."],
        "account": "another-customer",
    }).raise_for_status()

    sid = open_service(harness, domain)

    (task,) = harness.tasks(sid)
    assert (task["type"], task["status"], task["department_id"]) == ("setup", "new", harness.department_id)
    assert "belongs to another-customer, not to this service" in task["error"]
    assert "belongs to another-customer" in task["description"]
    assert harness.operations(sid)[0]["attempts"] == 1  # permanent: no retries
    assert pdns.zone(domain)["account"] == "another-customer"
    assert pdns.query(domain, "NS")[1] == ["ns.elsewhere.example."]


def test_closing_never_deletes_a_zone_that_is_not_the_services(harness, pdns, domain):
    sid = open_service(harness, domain)
    # the zone changed hands in PowerDNS behind the billing system's back
    pdns.api("PUT", f"/zones/{domain}.", json={"account": "another-customer"}).raise_for_status()

    harness.delete(sid)
    harness.run()

    (task,) = harness.tasks(sid)
    assert task["type"] == "delete"
    assert "belongs to another-customer" in task["error"]
    assert pdns.zone(domain) is not None


def test_more_records_than_the_tariff_allows_become_a_setup_task(harness, pdns, domain):
    sid = open_service(harness, domain, addons={"records": 2})

    (task,) = harness.tasks(sid)
    assert task["type"] == "setup"
    assert "would have 4 records, but the tariff allows 2" in task["error"]
    assert pdns.zone(domain) is None


def test_lowering_the_record_limit_below_the_records_becomes_a_change_task(harness, pdns, domain):
    sid = open_service(harness, domain)

    harness.edit(sid, addons={"records": 3})
    harness.run()

    (task,) = harness.tasks(sid)
    assert task["type"] == "change"
    assert "the tariff allows 3" in task["error"]
    assert harness.service(sid)["addons"]["records"] == 10


def test_changing_the_domain_becomes_a_change_task_and_keeps_the_zone(harness, pdns, domain):
    sid = open_service(harness, domain)

    harness.edit(sid, params={"domain": "other-" + domain})
    harness.run()

    (task,) = harness.tasks(sid)
    assert task["type"] == "change"
    assert "the domain of a DNS hosting service cannot change" in task["error"]
    assert harness.service(sid)["params"]["domain"] == domain
    assert pdns.query(domain) == ("NOERROR", ["192.0.2.10"])


def test_an_invalid_domain_is_refused_when_ordering(harness):
    with pytest.raises(Exception) as refused:
        harness.order(params={"domain": "not a domain"})
    assert "params.domain" in str(refused.value)


def test_powerdns_down_while_ordering_retries_then_task_and_retry_after_restart_activates(harness, pdns, domain):
    pdns.stop()
    try:
        sid = open_service(harness, domain)

        (task,) = harness.tasks(sid)
        assert (task["type"], task["status"], task["department_id"]) == ("setup", "new", harness.department_id)
        assert task["retryable"]
        assert f"PowerDNS at {pdns.api_url} is not reachable: connection refused" in task["error"]
        assert "gave up after 5 attempts" in task["error"]
        assert harness.operations(sid)[0]["attempts"] == 5
        assert sum(h["event"] == "operation.retry" for h in harness.history(sid)) == 4
        assert harness.service(sid)["status"] == "processing"
    finally:
        pdns.start()

    harness.retry_task(task["id"])
    harness.run()

    assert harness.service(sid)["status"] == "active"
    (task,) = harness.tasks(sid)
    assert task["status"] == "closed"
    assert pdns.query(domain) == ("NOERROR", ["192.0.2.10"])


def test_a_wrong_api_key_becomes_a_task_at_once_and_the_key_is_shown_nowhere(module_harness, settings, domain):
    wrong = "wrong-key-" + "7" * 20
    harness = module_harness("dnshosting", dnshosting_plugin(), settings={**settings, "api_key": wrong}, addons=ADDONS)

    sid = open_service(harness, domain)

    (task,) = harness.tasks(sid)
    assert "refused the API key (401 Unauthorized)" in task["error"]
    assert harness.operations(sid)[0]["attempts"] == 1
    shown = json.dumps([harness.tasks(sid), harness.history(sid), harness.operations(sid), harness.service(sid)])
    assert wrong not in shown
    assert settings["api_key"] not in shown


def test_an_open_repeated_after_a_crash_before_the_commit_keeps_one_zone(harness, settings, pdns, domain):
    """The module created the zone, then the worker died before recording it: the
    engine runs the open again and it must succeed without a second zone."""
    sid = harness.order(params={"domain": domain, "records": RECORDS})
    crashed_attempt = _ctx(harness, settings, harness.service(sid), "open", status="processing")
    dnshosting_plugin()().fulfil_open(crashed_attempt)  # its outcome was never recorded

    harness.run()

    assert harness.service(sid)["status"] == "active"
    assert harness.tasks(sid) == []
    assert len(pdns.zones_named(domain)) == 1
    assert pdns.query(f"www.{domain}") == ("NOERROR", ["192.0.2.11"])


def test_the_same_open_twice_gives_the_same_zone(settings, pdns, domain):
    from fulfil_dnshosting import DnsHosting, DnsHostingSettings

    ctx = _bare_ctx(DnsHostingSettings.model_validate(settings), domain, service_id=4242)
    module = DnsHosting()
    first, second = module.fulfil_open(ctx), module.fulfil_open(ctx)

    assert first.remote_id == second.remote_id == f"{domain}."
    assert "created" in first.message and "already existed" in second.message
    assert len(pdns.zones_named(domain)) == 1
    assert pdns.query(domain) == ("NOERROR", ["192.0.2.10"])


def test_closing_with_a_wrong_server_id_is_not_taken_for_a_zone_already_gone(settings, pdns, domain):
    """PowerDNS answers an unknown server id with the same 404 as an unknown zone."""
    from fulfil import ModuleError
    from fulfil_dnshosting import DnsHosting, DnsHostingSettings

    module = DnsHosting()
    module.fulfil_open(_bare_ctx(DnsHostingSettings.model_validate(settings), domain, service_id=4343))
    misconfigured = DnsHostingSettings.model_validate({**settings, "server_id": "nosuch"})

    with pytest.raises(ModuleError, match="is the server id 'nosuch' right"):
        module.fulfil_close(_bare_ctx(misconfigured, domain, service_id=4343, kind="close"))
    assert pdns.zone(domain) is not None


# -- building contexts as the engine does ------------------------------------------------------


def _ctx(harness, settings, service, kind, status=None):
    """The context the engine hands the module for the service's latest operation."""
    from fulfil import ClientInfo, OperationContext, ServiceInfo, TariffInfo
    from fulfil_dnshosting import DnsHostingSettings

    info = ServiceInfo(
        id=service["id"], status=status or service["status"],
        client=ClientInfo(id=harness.client_id, name="Test Client", email="client@example.test"),
        tariff=TariffInfo(id=harness.tariff_id, name="dns", service_type="dnshosting"),
        params=service["params"], addons=service["addons"], remote_id=service["remote_id"],
    )
    return OperationContext(
        operation_id=harness.operations(service["id"])[-1]["key"], kind=kind, attempt=1,
        module_name="dnshosting", service=info, settings=DnsHostingSettings.model_validate(settings),
    )


def _bare_ctx(settings, domain, *, service_id, kind="open"):
    from fulfil import ClientInfo, OperationContext, ServiceInfo, TariffInfo

    info = ServiceInfo(
        id=service_id, status="processing",
        client=ClientInfo(id=1, name="Test Client", email="client@example.test"),
        tariff=TariffInfo(id=1, name="dns", service_type="dnshosting"),
        params={"domain": domain, "records": RECORDS}, addons={"records": 10}, remote_id=None,
    )
    return OperationContext(
        operation_id=f"op-{kind}-{service_id}", kind=kind, attempt=1, module_name="dnshosting",
        service=info, settings=settings,
    )
