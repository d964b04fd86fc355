"""Admin endpoints: departments, staff, modules, processing modules, tariffs, clients."""

from __future__ import annotations

from fulfil.secrets import MASK


def test_departments_are_created_and_listed_with_a_cursor(world):
    for name in ("Billing", "Sales", "Abuse"):
        assert world.call("admin", "POST", "/departments", json={"name": name}).status_code == 201
    first = world.call("admin", "GET", "/departments", params={"limit": 3}).json()
    assert [d["name"] for d in first["items"]] == ["Support", "Network", "Billing"]
    rest = world.call("admin", "GET", "/departments", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [d["name"] for d in rest["items"]] == ["Sales", "Abuse"] and rest["next_cursor"] is None


def test_a_duplicate_department_is_422_naming_the_field(world):
    response = world.call("admin", "POST", "/departments", json={"name": "Support"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["field"] == "name" and "already exists" in error["msg"]


def test_unknown_fields_are_refused_and_named(world):
    response = world.call("admin", "POST", "/departments", json={"name": "X", "id": 7, "admin": True})
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["detail"]) == ["admin", "id"]
    assert {e["msg"] for e in response.json()["detail"]} == {"unknown field"}


def test_limit_above_200_and_a_forged_cursor_are_422(world):
    assert world.call("admin", "GET", "/clients", params={"limit": 201}).json()["detail"][0]["field"] == "limit"
    forged = world.call("admin", "GET", "/clients", params={"cursor": "not-a-cursor"})
    assert forged.status_code == 422 and forged.json()["detail"][0]["field"] == "cursor"


def test_new_staff_get_a_token_once_and_it_works(world):
    response = world.call(
        "admin", "POST", "/staff",
        json={"login": "jane", "name": "Jane", "department_ids": [world.owner_dept], "password": "long-enough"},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["token"] and created["department_ids"] == [world.owner_dept] and "password" not in created
    listed = world.call("admin", "GET", "/staff").json()["items"]
    assert "jane" in [m["login"] for m in listed]
    assert all("token" not in m and "password_hash" not in m for m in listed)
    me = world.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {created['token']}"})
    assert me.status_code == 200


def test_staff_with_a_missing_department_or_short_password_is_422(world):
    bad = world.call("admin", "POST", "/staff", json={"login": "x", "department_ids": [999]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "department_ids.0"
    short = world.call("admin", "POST", "/staff", json={"login": "y", "password": "short"})
    assert short.status_code == 422 and short.json()["detail"][0]["field"] == "password"


def test_modules_lists_plugins_operations_schemas_and_load_errors(world):
    world.fulfil.registry.load_errors["broken"] = "failed to load: ImportError: no module named panel_sdk"
    try:
        body = world.call("admin", "GET", "/modules").json()
    finally:
        world.fulfil.registry.load_errors.pop("broken")
    manual = next(m for m in body["items"] if m["name"] == "manual")
    assert manual["title"] == "Manual Setup"
    assert manual["operations"] == ["close", "edit", "open", "resume", "suspend"]
    assert "domain" in manual["params_schema"]["properties"]
    secretive = next(m for m in body["items"] if m["name"] == "secretive")
    assert secretive["settings_schema"]["required"] == ["url", "api_key"]
    assert body["load_errors"] == [{"name": "broken", "reason": "failed to load: ImportError: no module named panel_sdk"}]
    first = world.call("admin", "GET", "/modules", params={"limit": 1}).json()
    second = world.call("admin", "GET", "/modules", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == len(second["items"]) == 1 and first["items"] != second["items"]


def test_processing_module_secrets_are_masked_in_every_response(world):
    created = world.call(
        "admin", "POST", "/processing-modules",
        json={"name": "Panel", "module": "secretive", "department_id": world.owner_dept,
              "settings": {"url": "http://panel.test", "api_key": "top-secret-key"}},
    )
    assert created.status_code == 201, created.text
    pm = created.json()
    assert pm["settings"] == {"url": "http://panel.test", "api_key": MASK}
    assert pm["module"] == "secretive" and pm["installed"] is True and pm["department"]["name"] == "Support"
    for response in (
        world.call("admin", "GET", f"/processing-modules/{pm['id']}"),
        world.call("admin", "GET", "/processing-modules"),
        world.call("admin", "PATCH", f"/processing-modules/{pm['id']}", json={"name": "Panel 2"}),
    ):
        assert "top-secret-key" not in response.text
    # the mask sent back keeps the secret; the connection check still has it
    patched = world.call(
        "admin", "PATCH", f"/processing-modules/{pm['id']}",
        json={"settings": {"url": "http://panel.test", "api_key": MASK}, "department_id": world.other_dept},
    )
    assert patched.status_code == 200 and patched.json()["department"]["id"] == world.other_dept
    check = world.call("admin", "POST", f"/processing-modules/{pm['id']}/check-connection")
    assert check.json() == {"ok": True, "message": "panel reachable"}


def test_check_connection_reports_a_failure_and_bad_settings_are_422(world):
    bad = world.call(
        "admin", "POST", "/processing-modules",
        json={"name": "Panel", "module": "secretive", "department_id": world.owner_dept, "settings": {"url": "x"}},
    )
    assert bad.status_code == 422 and [e["field"] for e in bad.json()["detail"]] == ["settings.api_key"]
    pm = world.call(
        "admin", "POST", "/processing-modules",
        json={"name": "Panel", "module": "secretive", "department_id": world.owner_dept,
              "settings": {"url": "http://elsewhere.test", "api_key": "k"}},
    ).json()
    check = world.call("admin", "POST", f"/processing-modules/{pm['id']}/check-connection")
    assert check.status_code == 200 and check.json() == {"ok": False, "message": "cannot reach http://elsewhere.test"}
    assert world.call("admin", "POST", "/processing-modules/999/check-connection").status_code == 404


def test_a_processing_module_of_a_plugin_that_is_not_installed_is_422(world):
    response = world.call(
        "admin", "POST", "/processing-modules",
        json={"name": "Ghost", "module": "nonesuch", "department_id": world.owner_dept},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["module"], "field": "module", "msg": "module nonesuch is not installed", "type": "invalid"}
    ]


def test_tariffs_are_created_read_and_patched(world):
    created = world.call(
        "admin", "POST", "/tariffs",
        json={"name": "Hosting Pro", "service_type": "hosting", "processing_module_id": world.manual_module,
              "default_params": {"control_panel_url": "https://cp.example"},
              "addons": {"disk_gb": {"unit": "GB", "min": 10, "max": 500}}},
    )
    assert created.status_code == 201, created.text
    tariff = created.json()
    assert tariff["addons"]["disk_gb"] == {"unit": "GB", "title": "disk_gb", "min": 10, "max": 500, "default": 10}
    patched = world.call("admin", "PATCH", f"/tariffs/{tariff['id']}", json={"name": "Hosting Premium"})
    assert patched.json()["name"] == "Hosting Premium"
    assert world.call("admin", "GET", f"/tariffs/{tariff['id']}").json()["name"] == "Hosting Premium"
    assert world.call("admin", "GET", "/tariffs/9999").status_code == 404
    assert world.call("admin", "PATCH", "/tariffs/9999", json={"name": "x"}).status_code == 404


def test_bad_tariff_input_names_the_field(world):
    response = world.call(
        "admin", "POST", "/tariffs",
        json={"name": "Bad", "service_type": "hosting", "processing_module_id": world.manual_module,
              "default_params": {"colour": "red"}, "addons": {"disk_gb": {"min": 10, "max": 5}}},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "default_params.colour"
    response = world.call(
        "admin", "POST", "/tariffs",
        json={"name": "Bad", "service_type": "hosting", "processing_module_id": world.manual_module,
              "addons": {"disk_gb": {"min": 10, "max": 5}}},
    )
    assert response.json()["detail"][0]["field"] == "addons.disk_gb.max"
    missing = world.call("admin", "POST", "/tariffs", json={"name": "X", "service_type": "x", "processing_module_id": 999})
    assert missing.json()["detail"][0]["field"] == "processing_module_id"


def test_clients_are_created_and_a_bad_email_is_422(world):
    created = world.call("admin", "POST", "/clients", json={"name": "Globex", "email": "admin@globex.example"})
    assert created.status_code == 201 and created.json()["language"] == "en"
    bad = world.call("admin", "POST", "/clients", json={"name": "Initech", "email": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "email"
    names = [c["name"] for c in world.call("admin", "GET", "/clients").json()["items"]]
    assert names == ["Acme Ltd", "Globex"]
