import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    # The plugin is normally loaded through its pytest11 entry point (pip install -e .);
    # register it by hand when the tests run from a checkout that was not installed.
    if not config.pluginmanager.has_plugin("verify"):
        import verify.pytest_plugin as plugin

        config.pluginmanager.register(plugin, "verify")
