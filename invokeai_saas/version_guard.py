"""Refuse to patch an InvokeAI version the patches were not verified on.

The patches rely on InvokeAI internals (see ``invokeai_saas.patches``); on another version they could
silently do the wrong thing — e.g. run a billed service without billing. Refusing with a message that
says what to install is the safe failure.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from invokeai_saas import __version__
from invokeai_saas.patches import VERIFIED_INVOKEAI_VERSIONS


class UnsupportedInvokeAIVersion(RuntimeError):
    pass


def installed_invokeai_version() -> str | None:
    try:
        from invokeai.version import __version__ as invokeai_version  # the version the running code declares

        return str(invokeai_version)
    except ImportError:
        try:
            return version("invokeai")
        except PackageNotFoundError:
            return None


def check_invokeai_version(found: str | None = None) -> None:
    found = found if found is not None else installed_invokeai_version()
    if found in VERIFIED_INVOKEAI_VERSIONS:
        return
    supported = ", ".join(sorted(VERIFIED_INVOKEAI_VERSIONS))
    raise UnsupportedInvokeAIVersion(
        f"invokeai-saas {__version__} was verified on InvokeAI {supported}, but InvokeAI {found or '(not found)'} is "
        f"installed; saas mode was not started. Install a verified version (pip install invokeai=={supported}) "
        "or an invokeai-saas release verified on yours, or turn saas mode off (INVOKEAI_SAAS_ENABLED=false)."
    )
