"""The lazy activation hook, installed at interpreter start by ``invokeai_saas_activation.pth``.

Why a finder of our own: the post-import machinery (``wrapt.register_post_import_hook``) costs
~130 ms to import, which every Python program on the machine would pay. This finder costs one
list insertion; it does nothing until something imports ``invokeai``, and then it removes itself
and hands over to wrapt's post-import hooks (see ``invokeai_saas.activation``).

Set ``INVOKEAI_SAAS_DISABLE_HOOK=1`` to keep the overlay out of a process entirely (used by the
tests to run "stock InvokeAI without the package" from the same environment).
"""

import os
import sys


class InvokeAIImportWatcher:
    """A ``sys.meta_path`` entry that reacts to the first ``import invokeai`` and never finds anything."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "invokeai":
            uninstall()
            from invokeai_saas.activation import register_post_import_hooks

            register_post_import_hooks()
        return None


def install() -> None:
    if os.environ.get("INVOKEAI_SAAS_DISABLE_HOOK", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    if "invokeai" in sys.modules:  # the hook was installed late (e.g. imported by hand): register now
        from invokeai_saas.activation import register_post_import_hooks

        register_post_import_hooks()
        return
    if not any(isinstance(f, InvokeAIImportWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, InvokeAIImportWatcher())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, InvokeAIImportWatcher)]


install()
