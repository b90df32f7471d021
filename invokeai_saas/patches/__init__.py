"""Every seam into stock InvokeAI, one small module per upstream target.

This folder is the only place in the package that wraps, replaces or reaches into InvokeAI
internals. Each module names the upstream symbol it touches, why, and the InvokeAI versions it was
checked on (``VERIFIED_INVOKEAI_VERSIONS``); ``invokeai_saas.version_guard`` refuses to apply any of
them to another version.

It lives inside the ``invokeai_saas`` package (not as a top-level ``patches`` package as the design
sketch drew it) so the wheel does not claim the generic import name ``patches`` in site-packages.
"""

VERIFIED_INVOKEAI_VERSIONS: frozenset[str] = frozenset({"6.14.2"})
