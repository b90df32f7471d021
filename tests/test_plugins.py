"""The plugin manager and the dependency-swap hook, used outside any server."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from logging import Logger
from pathlib import Path
from typing import Any

import pytest

from invokeai_saas import get_plugin_manager, swap_services
from invokeai_saas.config import SaasSettings
from invokeai_saas.plugins import hookimpl
from invokeai_saas.plugins.manager import BUILTIN_PLUGINS, SaasPluginError, builtin_name
from tests.support.invokeai import ENTRY_POINT_PLUGIN_DIR


@pytest.fixture()
def entry_point_on_path() -> Iterator[None]:
    sys.path.insert(0, str(ENTRY_POINT_PLUGIN_DIR))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(ENTRY_POINT_PLUGIN_DIR))
        sys.modules.pop("saas_test_swap_plugin", None)
        importlib.invalidate_caches()


def test_builtins_are_registered_by_name() -> None:
    pm = get_plugin_manager(SaasSettings())
    names = {name for name, _ in pm.list_name_plugin()}
    assert {builtin_name(p) for p in BUILTIN_PLUGINS} <= names


def test_disabled_plugins_are_not_loaded() -> None:
    pm = get_plugin_manager(SaasSettings(disabled_plugins=["stripe_billing"]))
    assert pm.get_plugin("stripe_billing") is None
    assert pm.get_plugin("core") is not None


def test_entry_point_plugin_is_found_and_swaps(entry_point_on_path: None) -> None:
    class Stock:
        def get_by_key(self, user_id: str, key: str) -> str | None:
            return "stock"

    pm = get_plugin_manager(SaasSettings())
    assert pm.get_plugin("saas_test_swap") is not None
    services: dict[str, Any] = {"client_state_persistence": Stock(), "images": object()}
    images = services["images"]
    result = swap_services(None, SaasSettings(), services, plugin_manager=pm)  # type: ignore[arg-type]
    assert result is services
    assert services["images"] is images
    swapped = services["client_state_persistence"]
    assert swapped.get_by_key("u", "saas-test-plugin") == "swapped by the entry-point plugin"
    assert swapped.get_by_key("u", "other") == "stock"


def test_entry_point_plugin_can_be_disabled(entry_point_on_path: None) -> None:
    pm = get_plugin_manager(SaasSettings(disabled_plugins=["saas_test_swap"]))
    assert pm.get_plugin("saas_test_swap") is None


def test_third_party_runs_after_builtins(entry_point_on_path: None) -> None:
    """A third-party plugin sees what built-ins installed and has the last word."""
    calls: list[str] = []

    class LateBuiltin:
        @hookimpl
        def saas_swap_services(self, services: dict[str, Any], logger: Logger) -> None:
            calls.append("builtin")
            services["client_state_persistence"] = "from-builtin"

    pm = get_plugin_manager(SaasSettings())
    # register as the manager registers built-ins: after the entry points
    pm.register(LateBuiltin(), name="late_builtin")
    services: dict[str, Any] = {"client_state_persistence": "stock"}
    swap_services(None, SaasSettings(), services, plugin_manager=pm)  # type: ignore[arg-type]
    assert calls == ["builtin"]
    # the entry-point plugin wrapped what the built-in installed
    assert services["client_state_persistence"]._inner == "from-builtin"


def test_broken_entry_point_is_named(tmp_path: Path) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[invokeai_saas]\nbroken = no_such_module_for_saas\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(SaasPluginError, match="no_such_module_for_saas"):
            get_plugin_manager(SaasSettings())
    finally:
        sys.path.remove(str(tmp_path))
        importlib.invalidate_caches()


def test_swap_services_builds_its_own_manager_from_config() -> None:
    services: dict[str, Any] = {"users": "stock-users"}
    assert swap_services(None, SaasSettings(), services) == {"users": "stock-users"}  # type: ignore[arg-type]
