"""pytest configuration for the HBONE interop tests."""


def pytest_configure(config):
    config.addinivalue_line("markers", "loopback: opens sockets on 127.0.0.1 only, never another interface")
