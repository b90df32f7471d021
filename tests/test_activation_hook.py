"""The lazy activation hook, the version guard and start-up refusals, in real interpreters.

The refusal tests use a small stand-in ``invokeai`` package on PYTHONPATH (it shadows the real one
for that interpreter only), so they exercise the real hook, post-import machinery and messages
without importing torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from invokeai_saas.devstack import PostgresServer, free_port
from invokeai_saas.version_guard import UnsupportedInvokeAIVersion, check_invokeai_version
from tests.support.databases import fresh_database


def _python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_SAAS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_interpreter_start_imports_nothing_heavy() -> None:
    r = _python(
        """
        import sys
        heavy = [m for m in ("invokeai", "wrapt", "pydantic", "fastapi", "pluggy", "invokeai_saas.activation")
                 if m in sys.modules]
        print(heavy, [type(f).__name__ for f in sys.meta_path][0])
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[] InvokeAIImportWatcher"


def test_kill_switch_keeps_the_hook_out() -> None:
    r = _python(
        "import sys; print(any(type(f).__name__ == 'InvokeAIImportWatcher' for f in sys.meta_path))",
        env={"INVOKEAI_SAAS_DISABLE_HOOK": "1"},
    )
    assert r.stdout.strip() == "False"


def test_hook_hands_over_to_wrapt_on_first_invokeai_import() -> None:
    r = _python(
        """
        import sys
        import invokeai
        print(any(type(f).__name__ == 'InvokeAIImportWatcher' for f in sys.meta_path), 'wrapt' in sys.modules)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False True"


def _fake_invokeai(tmp_path: Path, version: str, subfolder_strategy: str = "flat") -> Path:
    """A stand-in ``invokeai`` with just the modules activation touches."""
    pkg = tmp_path / "fake" / "invokeai"
    for sub in ("app", "app/api", "app/services", "app/services/config", "version", "backend", "backend/util"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "version" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (pkg / "app" / "services" / "config" / "config_default.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            class _Config:
                multiuser = False
                image_subfolder_strategy = {subfolder_strategy!r}
                config_file_path = Path({str(tmp_path / "root" / "invokeai.yaml")!r})
            _config = _Config()
            def get_config():
                return _config
            """
        )
    )
    (pkg / "app" / "api" / "dependencies.py").write_text("class ApiDependencies:\n    pass\n")
    (tmp_path / "root").mkdir(exist_ok=True)
    return tmp_path / "fake"


def test_version_guard_refuses_unverified_invokeai(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "9.9.9")
    r = _python(
        "import invokeai.app.api.dependencies; print('started')",
        env={"PYTHONPATH": str(fake), "INVOKEAI_SAAS_ENABLED": "true"},
    )
    assert r.returncode == 2
    assert "started" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "9.9.9" in lines[0] and "6.14.2" in lines[0] and "pip install invokeai==6.14.2" in lines[0]
    assert "Traceback" not in r.stderr


def test_unverified_invokeai_is_left_alone_when_saas_is_off(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "9.9.9")
    r = _python("import invokeai.app.api.dependencies; print('started')", env={"PYTHONPATH": str(fake)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "started"


def test_bad_saas_yaml_stops_startup_with_one_line(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2")
    (tmp_path / "root" / "saas.yaml").write_text("enabled: true\nredis_uri: redis://x\n")
    r = _python("import invokeai.app.api.dependencies; print('started')", env={"PYTHONPATH": str(fake)})
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "redis_uri" in r.stderr
    assert "Traceback" not in r.stderr


def test_broken_plugin_stops_startup_with_one_line(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2")
    dist = fake / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[invokeai_saas]\nbroken = no_such_module_for_saas\n")
    r = _python(
        "import invokeai.app.api.dependencies; print('started')",
        env={"PYTHONPATH": str(fake), "INVOKEAI_SAAS_ENABLED": "1"},
    )
    assert r.returncode == 2
    assert "no_such_module_for_saas" in r.stderr and "Traceback" not in r.stderr


def test_check_invokeai_version() -> None:
    check_invokeai_version("6.14.2")
    with pytest.raises(UnsupportedInvokeAIVersion, match="6.15.0"):
        check_invokeai_version("6.15.0")


def test_unmigrated_database_stops_startup_with_the_command(tmp_path: Path, postgres: PostgresServer) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2")
    with fresh_database(postgres, template=None) as engine:
        url = engine.url.render_as_string(hide_password=False)
        r = _python(
            "import invokeai.app.api.dependencies; print('started')",
            env={"PYTHONPATH": str(fake), "INVOKEAI_SAAS_ENABLED": "1", "INVOKEAI_SAAS_DATABASE_URL": url},
        )
    assert r.returncode == 2
    assert "invokeai-saas db upgrade" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_unreachable_database_stops_startup_without_hostnames(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2")
    url = f"postgresql+psycopg://u:secretpw@127.0.0.1:{free_port()}/db"
    r = _python(
        "import invokeai.app.api.dependencies; print('started')",
        env={"PYTHONPATH": str(fake), "INVOKEAI_SAAS_ENABLED": "1", "INVOKEAI_SAAS_DATABASE_URL": url},
    )
    assert r.returncode == 2
    assert "INVOKEAI_SAAS_DATABASE_URL" in r.stderr and "secretpw" not in r.stderr


def test_object_storage_without_a_database_stops_startup(tmp_path: Path) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2")
    r = _python(
        "import invokeai.app.api.dependencies; print('started')",
        env={"PYTHONPATH": str(fake), "INVOKEAI_SAAS_ENABLED": "1", "INVOKEAI_SAAS_S3_BUCKET": "media"},
    )
    assert r.returncode == 2 and "started" not in r.stdout
    assert "database_url" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_object_storage_needs_the_flat_subfolder_strategy(
    tmp_path: Path, postgres: PostgresServer, pg_template: str
) -> None:
    fake = _fake_invokeai(tmp_path, "6.14.2", subfolder_strategy="date")
    with fresh_database(postgres, pg_template) as engine:
        env = {
            "PYTHONPATH": str(fake),
            "INVOKEAI_SAAS_ENABLED": "1",
            "INVOKEAI_SAAS_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "INVOKEAI_SAAS_S3_BUCKET": "media",
        }
        r = _python("import invokeai.app.api.dependencies; print('started')", env=env)
    assert r.returncode == 2 and "started" not in r.stdout
    assert "image_subfolder_strategy" in r.stderr and "flat" in r.stderr and "Traceback" not in r.stderr
