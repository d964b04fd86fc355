"""Finding module plugins through real entry points, and surviving broken ones."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from fulfil import hookspecs
from fulfil.models import Department, ProcessingModule, TariffPlan
from fulfil.plugins import ModuleRegistry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch):
    """An installed distribution with three bad entry points in fulfil.modules."""
    dist = tmp_path / "fulfil_broken_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fulfil-broken-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [fulfil.modules]
            missingimport = fulfil_no_such_package:plugin
            badsignature = fulfil_badsignature:plugin
            unknownhook = fulfil_unknownhook:plugin
            raisesoninfo = fulfil_raisesoninfo:plugin
            """
        )
    )
    (tmp_path / "fulfil_badsignature.py").write_text(
        textwrap.dedent(
            """\
            from fulfil import hookimpl, ModuleInfo

            class plugin:
                @hookimpl
                def fulfil_module_info(self):
                    return ModuleInfo(title="bad signature")

                @hookimpl
                def fulfil_open(self, context):  # the spec's argument is ctx
                    pass
            """
        )
    )
    (tmp_path / "fulfil_unknownhook.py").write_text(
        textwrap.dedent(
            """\
            from fulfil import hookimpl, ModuleInfo

            class plugin:
                @hookimpl
                def fulfil_module_info(self):
                    return ModuleInfo(title="unknown hook")

                @hookimpl
                def fulfil_reboot(self, ctx):
                    pass
            """
        )
    )
    (tmp_path / "fulfil_raisesoninfo.py").write_text(
        textwrap.dedent(
            """\
            from fulfil import hookimpl

            class plugin:
                @hookimpl
                def fulfil_module_info(self):
                    raise RuntimeError("cannot read my configuration")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_manual_setup_is_found_through_its_entry_point():
    registry = ModuleRegistry.discover()
    assert registry.modules["manual"].info.title == "Manual Setup"
    assert "fulfil_manual" in registry.modules["manual"].origin


def test_broken_plugins_are_reported_by_name_and_reason(broken_distribution):
    registry = ModuleRegistry.discover()
    errors = registry.load_errors
    assert "ModuleNotFoundError" in errors["missingimport"]
    assert "fulfil_no_such_package" in errors["missingimport"]
    assert "hooks do not match" in errors["badsignature"] and "context" in errors["badsignature"]
    assert "fulfil_reboot" in errors["unknownhook"]
    assert "cannot read my configuration" in errors["raisesoninfo"]
    # the rest keeps working
    assert "manual" in registry.modules
    assert not {"missingimport", "badsignature", "unknownhook", "raisesoninfo"} & set(registry.modules)


def test_service_bound_to_a_broken_module_gets_a_task(broken_distribution, fulfil_database_url, manual):
    from fulfil.app import Fulfil

    app = Fulfil(fulfil_database_url, registry=ModuleRegistry.discover())
    try:
        with app.session() as s:
            dept = s.scalar(select(Department))
            # configured while the plugin still worked; since then it broke
            module = ProcessingModule(name="Broken panel", plugin="missingimport", department_id=dept.id, settings={})
            s.add(module)
            s.flush()
            tariff = TariffPlan(name="Broken tariff", service_type="web", processing_module_id=module.id)
            s.add(tariff)
            s.flush()
            tariff_id = tariff.id
        manual.tariff_id = tariff_id
        manual.app = app
        manual.worker = app.worker()
        sid = manual.order()
        manual.run()
        [task] = manual.tasks(sid)
        assert task["type"] == "setup"
        assert task["error"].startswith("module missingimport failed to load: failed to load: ModuleNotFoundError")
        assert task["department_id"] == dept.id
    finally:
        app.dispose()


def test_every_hook_is_documented_in_the_module_authors_guide():
    guide = (ROOT / "docs" / "writing-a-module.md").read_text()
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("fulfil_")]
    assert len(hooks) >= 12
    undocumented = [h for h in hooks if f"`{h}" not in guide]
    assert undocumented == []


def test_every_hookspec_says_when_it_is_called():
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("fulfil_"):
            assert fn.__doc__ and len(fn.__doc__.split()) > 8, name
