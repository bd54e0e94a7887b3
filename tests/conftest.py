pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.flink"]


def pytest_collection_modifyitems(session, config, items):
    # Disruptive tests kill shared stack processes (every running job restarts), so they
    # run after everything else in the session.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
