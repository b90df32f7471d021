"""The pluggy markers, in a module of their own so plugins can import them without the manager."""

import pluggy

PROJECT_NAME = "invokeai_saas"
"""The pluggy project name, which is also the entry-point group third-party plugins register in."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
