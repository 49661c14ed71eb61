"""The live smoke test: opt-in, against the real fal.ai, with the maintainer's FAL_KEY.

Runs only when asked for with `-m live` (pyproject's addopts deselect the marker otherwise) and FAL_KEY is set. The
key is read here, at collection, from the environment the maintainer started pytest in: tests of the default suite
set FAL_KEY to the emulator's canary key while they run, and none of those run in a live session.
"""

import os

import pytest

LIVE_KEY = os.environ.get("FAL_KEY", "").strip()


def pytest_collection_modifyitems(config, items):
    asked = "live" in (config.option.markexpr or "") and "not live" not in config.option.markexpr
    for item in items:
        if item.get_closest_marker("live") is None:
            continue
        if not asked:
            item.add_marker(pytest.mark.skip(reason="talks to the real fal and costs money: run it with -m live"))
        elif not LIVE_KEY:
            item.add_marker(pytest.mark.skip(reason="set FAL_KEY to run the live tests against the real fal"))


@pytest.fixture(scope="session")
def live_key():
    from support import pack_module

    # Every string the tests write is scrubbed of the key, as the pack scrubs its own output.
    pack_module("core.secrets").register(LIVE_KEY)
    return LIVE_KEY
