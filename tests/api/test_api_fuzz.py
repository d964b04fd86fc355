"""schemathesis against /openapi.json: whatever it sends, no answer is a 5xx and
every answer matches the schema. Bounded (a few examples per operation) so it runs
in well under a minute; on SQLite and PostgreSQL (which refuses more values)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from fulfil.api import create_app
from fulfil.app import Fulfil
from fulfil.plugins import ModuleRegistry
from fulfil.services import catalog, lifecycle
from fulfil.testing import empty_all_tables, migrated_sqlite_copy

ADMIN_TOKEN = "fuzz-admin-token"


def _seed(fulfil: Fulfil) -> None:
    """Something for every path to find: ids 1 and 2 of each kind exist."""
    with fulfil.session() as s:
        support = catalog.create_department(session=s, name="Support")
        catalog.create_department(session=s, name="Network")
        catalog.create_staff(session=s, login="admin", is_admin=True, token=ADMIN_TOKEN)
        catalog.create_staff(session=s, login="support", department_ids=[support.id])
        client = catalog.create_client(session=s, name="Acme", email="it@acme.example")
        catalog.create_client(session=s, name="Globex", email="it@globex.example")
        module = catalog.create_processing_module(session=s, name="Manual", plugin="manual", department_id=support.id)
        tariff = catalog.create_tariff(
            session=s, name="Hosting", service_type="hosting", processing_module_id=module.id,
            addons={"disk_gb": {"min": 1, "max": 100}},
        )
        catalog.create_tariff(session=s, name="Hosting 2", service_type="hosting", processing_module_id=module.id)
        for domain in ("a.example", "b.example", "c.example"):
            lifecycle.order_service(session=s, client_id=client.id, tariff_id=tariff.id, params={"domain": domain})
    fulfil.worker(concurrency=1).run_pending()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed_app(request, tmp_path_factory):
    if request.param == "sqlite":
        url = migrated_sqlite_copy(tmp_path_factory.mktemp("fuzz") / "fulfil.db")
    else:
        url = request.getfixturevalue("postgres_url")
        empty_all_tables(url)
    fulfil = Fulfil(url, registry=ModuleRegistry.discover())
    _seed(fulfil)
    try:
        yield create_app(fulfil)
    finally:
        fulfil.dispose()


def test_no_5xx_and_every_answer_matches_the_schema(fuzzed_app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=8, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )
        def probe(case):
            case.call_and_validate(headers=headers, checks=checks)

        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
