"""Run localstripe bound to 127.0.0.1, with its state file in our data dir.

Executed as a script (``python -P _stripe_launcher.py``) by StripeServer. localstripe's own entry point binds
``::`` (every IPv4 and IPv6 address) and pickles its state to the fixed path /tmp/localstripe.pickle, shared by
every instance on the machine; this launcher reuses its aiohttp app but chooses the address and the state file.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
from pathlib import Path
from typing import Any


def _install_state_file(state: Path) -> None:
    from localstripe import resources

    def load(store: Any) -> None:
        try:
            with state.open("rb") as handle:
                saved = pickle.load(handle)
        except FileNotFoundError:
            return
        store.clear()
        dict.update(store, saved)  # dict.update: no Store.__setitem__, so no re-save while loading

    def dump(store: Any) -> None:
        # A plain dict is pickled, so loading never calls back into Store; write-then-rename keeps the previous
        # state intact if we die mid-write.
        tmp = state.with_name(state.name + ".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(dict(store), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, state)

    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()

    _install_state_file(args.state)
    from aiohttp import web
    from localstripe import resources, server

    resources.store.try_load_from_disk()
    access_log = logging.getLogger("aiohttp.access")
    access_log.setLevel(logging.DEBUG)
    access_log.addHandler(logging.StreamHandler())
    web.run_app(server.app, host=args.host, port=args.port, access_log=access_log, print=None)


if __name__ == "__main__":
    main()
