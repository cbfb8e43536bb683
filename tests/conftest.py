pytest_plugins = ["tests.fixtures_servers", "tests.fixtures_storage_servers", "tests.fixtures_faults",
                  "tests.fixtures_keystone"]
pytest_plugins += ["tests.fixtures_azure"]
