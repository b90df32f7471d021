"""Saas settings: environment, saas.yaml beside invokeai.yaml, validation that names what to fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from invokeai_saas.config import SaasConfigError, SaasSettings, load_settings, write_settings

README = Path(__file__).parent.parent / "README.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("INVOKEAI_SAAS_"):
            monkeypatch.delenv(key)


def test_off_by_default(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "invokeai.yaml").enabled is False


def test_file_beside_invokeai_yaml(tmp_path: Path) -> None:
    (tmp_path / "saas.yaml").write_text("enabled: true\nredis_url: redis://127.0.0.1:1/0\n")
    settings = load_settings(tmp_path / "invokeai.yaml")
    assert settings.enabled is True
    assert settings.redis_url == "redis://127.0.0.1:1/0"


def test_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "saas.yaml").write_text("enabled: true\ndatabase_pool_size: 3\n")
    monkeypatch.setenv("INVOKEAI_SAAS_ENABLED", "false")
    monkeypatch.setenv("INVOKEAI_SAAS_DISABLED_PLUGINS", '["stripe_billing"]')
    settings = load_settings(tmp_path / "invokeai.yaml")
    assert settings.enabled is False
    assert settings.database_pool_size == 3
    assert settings.disabled_plugins == ["stripe_billing"]


def test_explicit_config_file_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "conf" / "mine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("enabled: true\n")
    monkeypatch.setenv("INVOKEAI_SAAS_CONFIG_FILE", str(elsewhere))
    assert load_settings(tmp_path / "invokeai.yaml").enabled is True


def test_unknown_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "saas.yaml").write_text("enabled: true\ndatabse_url: postgresql://x/y\n")
    with pytest.raises(SaasConfigError) as e:
        load_settings(tmp_path / "invokeai.yaml")
    assert "databse_url" in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_values_are_explained(tmp_path: Path) -> None:
    with pytest.raises(SaasConfigError, match="PostgreSQL URL"):
        load_settings(tmp_path / "invokeai.yaml", database_url="mysql://u:p@h/db")
    (tmp_path / "saas.yaml").write_text("- not\n- a mapping\n")
    with pytest.raises(SaasConfigError, match="mapping"):
        load_settings(tmp_path / "invokeai.yaml")
    (tmp_path / "saas.yaml").write_text("enabled: [unclosed\n")
    with pytest.raises(SaasConfigError, match="not valid YAML"):
        load_settings(tmp_path / "invokeai.yaml")


def test_secrets_never_print(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "x.yaml", stripe_api_key="sk_test_supersecret", s3_secret_access_key="s3cr3t")
    assert "supersecret" not in repr(settings) and "s3cr3t" not in repr(settings)
    assert settings.stripe_api_key is not None
    assert settings.stripe_api_key.get_secret_value() == "sk_test_supersecret"


def test_write_settings_round_trip(tmp_path: Path) -> None:
    write_settings(tmp_path / "saas.yaml", {"enabled": True, "s3_bucket": "b", "s3_secret_access_key": "k"})
    settings = load_settings(tmp_path / "invokeai.yaml")
    assert settings.s3_bucket == "b" and settings.s3_secret_access_key is not None
    with pytest.raises(ValueError):
        write_settings(tmp_path / "other.yaml", {"no_such_setting": 1})


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    documented = set(re.findall(r"`INVOKEAI_SAAS_([A-Z0-9_]+)`", text))
    assert {name.upper() for name in SaasSettings.model_fields} <= documented
