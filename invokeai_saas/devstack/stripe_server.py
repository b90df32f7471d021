"""A fake Stripe API served by localstripe, through our launcher (see _stripe_launcher for why)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from invokeai_saas.devstack.binaries import find_executable
from invokeai_saas.devstack.credentials import load_or_create, token
from invokeai_saas.devstack.errors import PrerequisiteMissing
from invokeai_saas.devstack.process import ManagedServer

__all__ = ["StripeServer"]

_LAUNCHER = Path(__file__).with_name("_stripe_launcher.py")


class StripeServer(ManagedServer):
    """localstripe on 127.0.0.1 with its state in ``data_dir/localstripe.pickle``.

    localstripe accepts any key that starts with ``sk_``; a stable generated one is kept in the data dir so the
    app's settings do not change between runs. ``bin_dirs`` is searched for the Python interpreter that has
    localstripe installed (default: the running one).
    """

    name = "stripe"
    label = "Stripe (localstripe)"
    port_option = "--stripe-port"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        log_dir: Path | None = None,
        bin_dirs: Sequence[Path] | None = None,
    ) -> None:
        super().__init__(data_dir, port, log_dir=log_dir, bin_dirs=bin_dirs)
        self.state_path = self.data_dir / "localstripe.pickle"
        self._credentials_path = self.data_dir / "credentials.json"
        self._python: Path | None = None
        self._secrets: dict[str, str] | None = None

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        if self._secrets is None:
            self._secrets = load_or_create(
                self._credentials_path, self.label, lambda: {"api_key": "sk_test_" + token(18).replace("-", "")}
            )
        return self._secrets["api_key"]

    def check_prerequisites(self) -> None:
        install = "pip install localstripe in this virtualenv"
        if self.bin_dirs is None:
            self._python = Path(sys.executable)
            has_module = importlib.util.find_spec("localstripe") is not None
        else:
            self._python = find_executable(("python3", "python"), self.bin_dirs, self.label, install)
            probe = subprocess.run([str(self._python), "-c", "import localstripe"], capture_output=True, check=False)
            has_module = probe.returncode == 0
        if not has_module:
            raise PrerequisiteMissing(f"{self.label}: the localstripe package is not installed; {install}")
        try:
            import stripe  # noqa: F401
        except ImportError:
            raise PrerequisiteMissing(f"{self.label}: the stripe package is missing; pip install stripe") from None

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _command(self) -> list[str]:
        assert self._python is not None
        # -P: do not put the launcher's own folder (this package) first on sys.path.
        return [str(self._python), "-P", str(_LAUNCHER), "--port", str(self.port), "--state", str(self.state_path)]

    def client(self) -> object:
        """A ``stripe.StripeClient`` talking to this server."""
        import stripe

        return stripe.StripeClient(self.api_key, base_addresses={"api": self.api_base}, max_network_retries=0)

    def _probe(self) -> None:
        self.client().v1.customers.list(params={"limit": 1})  # type: ignore[attr-defined]
