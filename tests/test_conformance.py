"""The conformance checks of zoo.testing on the first-party plugins, used exactly as a
third-party distribution uses them in its own tests."""

from zoo.testing import conformance_tests

test_first_party_plugins_conform = conformance_tests("keras-zoo")
