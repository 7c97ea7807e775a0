import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    # The plugin is normally loaded through its pytest11 entry point (pip install -e .);
    # register it by hand when the tests run from a checkout that was not installed.
    if not config.pluginmanager.has_plugin("verify"):
        import verify.pytest_plugin as plugin

        config.pluginmanager.register(plugin, "verify")


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test, restored after: timing-sensitive binding tests run beside another
    xdist worker on a two-core machine, where a second thread per process only adds synchronisation."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
