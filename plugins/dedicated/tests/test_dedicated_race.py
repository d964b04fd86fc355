"""Two orders racing for the last server: the database decides, on SQLite and on
PostgreSQL (where the claims really run side by side)."""

from __future__ import annotations

import pytest

from fulfil.testing import empty_all_tables, migrated_sqlite_copy


@pytest.fixture(params=["sqlite", "postgresql"])
def fulfil_database_url(request, tmp_path):
    if request.param == "sqlite":
        return migrated_sqlite_copy(tmp_path / "fulfil.db")
    url = request.getfixturevalue("postgres_url")
    empty_all_tables(url)
    return url


def test_two_orders_racing_for_the_last_server_one_gets_it_the_other_a_setup_task(dedicated, redfish, wait_until):
    [server] = redfish.take(1)
    h = dedicated([server])
    first, second = h.order(), h.order()

    h.worker.start()  # two runner threads: both opens run at the same time
    try:
        wait_until(lambda: len(h.tasks()) == 2, what="both orders to settle")
    finally:
        h.worker.stop()

    won, lost = [], []
    for sid in (first, second):
        [task] = h.tasks(sid)
        assert task["type"] == "setup"
        (lost if task["error"] else won).append((sid, task))
    assert len(won) == 1 and len(lost) == 1
    (winner, setup), (loser, exhausted) = won[0], lost[0]
    assert server["label"] in setup["description"]
    assert setup["main_settings"]["ip_address"] == server["ip_address"]
    assert exhausted["error"].startswith("pool exhausted")
    assert exhausted["retryable"]
    assert "ip_address" not in h.service(loser)["params"]
    assert h.service(winner)["remote_id"] is not None and h.service(loser)["remote_id"] is None
    assert redfish.power_state(server["system_id"]) == "On"
