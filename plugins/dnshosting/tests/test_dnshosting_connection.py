"""Settings, main settings, "check connection", and how PowerDNS's answers become
errors staff read."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
from pydantic import ValidationError

from fulfil import ModuleError, TransientModuleError
from fulfil_dnshosting import DnsHosting, DnsHostingParams, DnsHostingSettings
from fulfil_dnshosting.powerdns import PowerDNS


#: settings for tests that need no PowerDNS at all (each points api_url elsewhere)
OFFLINE = {"api_url": "http://127.0.0.1:9", "api_key": "k-offline", "nameservers": ["ns1.fulfil-test.net"]}


def check(settings: dict) -> str:
    return DnsHosting().fulfil_check_connection(DnsHostingSettings.model_validate(settings))


# -- settings and main settings ------------------------------------------------------------


def test_settings_mask_the_api_key_and_refuse_unknown_fields():
    settings = DnsHostingSettings.model_validate(
        {"api_url": "http://127.0.0.1:8081/api/v1/", "api_key": "s3cret", "nameservers": ["NS1.Provider.net"]}
    )
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.model_dump_json()
    assert settings.base_url == "http://127.0.0.1:8081"
    assert (settings.server_id, settings.nameservers) == ("localhost", ["ns1.provider.net."])
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        DnsHostingSettings.model_validate(
            {"api_url": "http://x", "api_key": "k", "nameservers": ["ns1.p.net"], "zone_kind": "Master"}
        )
    with pytest.raises(ValidationError, match="nameservers"):
        DnsHostingSettings.model_validate({"api_url": "http://x", "api_key": "k", "nameservers": []})


def test_the_domain_is_normalised_and_records_are_made_relative():
    params = DnsHostingParams.model_validate({
        "domain": "Example.COM.",
        "records": [
            {"type": "a", "content": "192.0.2.1"},
            {"name": "www.example.com.", "type": "CNAME", "content": "example.com"},
            {"name": "@", "type": "MX", "content": "10 Mail.Example.net"},
        ],
    })
    assert params.domain == "example.com"
    assert [(r.name, r.type, r.content) for r in params.records] == [
        ("@", "A", "192.0.2.1"),
        ("www", "CNAME", "example.com."),
        ("@", "MX", "10 mail.example.net."),
    ]


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"domain": "localhost"}, "not a domain name of its own"),
        ({"domain": "-bad-.example"}, "not a valid label"),
        ({"domain": "192.0.2.1"}, "an address, not a domain name"),
        ({"domain": "a" * 64 + ".example"}, "not a valid label"),
        ({"domain": "example.com", "records": [{"type": "A", "content": "2001:db8::1"}]}, "not valid content for an A record"),
        ({"domain": "example.com", "records": [{"type": "MX", "content": "mail.example.com"}]}, "MX record"),
        ({"domain": "example.com", "records": [{"name": "x.example.org.", "type": "A", "content": "192.0.2.1"}]}, "outside the zone"),
        ({"domain": "example.com", "records": [{"type": "CNAME", "content": "elsewhere.example"}]}, "cannot have a CNAME"),
        ({"domain": "example.com", "records": [{"type": "NS", "content": "ns.example.net"}]}, "provider's nameservers"),
        ({"domain": "example.com", "records": [{"type": "SPF", "content": "v=spf1"}]}, "type"),
        ({"domain": "example.com", "hostname": "x"}, "Extra inputs"),
    ],
)
def test_invalid_main_settings_say_why(params, reason):
    with pytest.raises(ValidationError, match=reason):
        DnsHostingParams.model_validate(params)


# -- check connection ----------------------------------------------------------------------------


def test_check_connection_names_the_powerdns_version(settings):
    assert check(settings).startswith("reachable, PowerDNS 4.")


def test_check_connection_with_a_wrong_key_says_so_without_showing_it(settings):
    with pytest.raises(ModuleError) as refused:
        check({**settings, "api_key": "not-the-key-123"})
    assert not isinstance(refused.value, TransientModuleError)
    assert "refused the API key (401 Unauthorized)" in refused.value.message
    assert "not-the-key-123" not in refused.value.message


def test_check_connection_when_nothing_listens_says_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientModuleError, match=f"PowerDNS at http://127.0.0.1:{port} is not reachable: connection refused"):
        check({**OFFLINE, "api_url": f"http://127.0.0.1:{port}"})


def test_check_connection_with_a_wrong_server_id_names_it(settings):
    with pytest.raises(ModuleError, match="is the server id 'nosuch' right"):
        check({**settings, "server_id": "nosuch"})


def test_credentials_in_the_url_never_reach_a_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientModuleError) as failed:
        check({**OFFLINE, "api_url": f"http://admin:hunter2@127.0.0.1:{port}"})
    assert "hunter2" not in failed.value.message


# -- how PowerDNS's answers become errors ------------------------------------------------------


def test_powerdns_refusing_a_change_is_permanent_with_its_own_words(settings, pdns):
    with PowerDNS(DnsHostingSettings.model_validate(settings)) as api:
        zone = api.create_zone({"name": "refusal-test.example.", "kind": "Native", "nameservers": ["ns1.fulfil-test.net."]})
        with pytest.raises(ModuleError) as refused:
            api.patch_rrsets(zone["id"], [{
                "name": "www.refusal-test.example.", "type": "A", "ttl": 300, "changetype": "REPLACE",
                "records": [{"content": "not-an-address", "disabled": False}],
            }])
        api.delete_zone(zone["id"])
    assert not isinstance(refused.value, TransientModuleError)
    assert refused.value.message.startswith("PowerDNS refused to change records of zone refusal-test.example.: 422 ")
    assert "not-an-address" in refused.value.message


def test_a_server_that_does_not_answer_in_time_is_transient():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(TransientModuleError, match="did not answer within 0.3 s"):
            check({**OFFLINE, "api_url": f"http://127.0.0.1:{port}", "request_timeout": 0.3})


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"error": "Backend error: database is locked"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_5xx_is_transient_and_carries_the_servers_error():
    # a stand-in for a PowerDNS whose backend fails: the real one rarely obliges
    server = http.server.HTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(TransientModuleError, match="503 Backend error: database is locked"):
            check({**OFFLINE, "api_url": f"http://127.0.0.1:{server.server_port}"})
    finally:
        server.shutdown()
        server.server_close()
