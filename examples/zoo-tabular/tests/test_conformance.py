"""keras-zoo's conformance checks, one test per registered item and check."""

from zoo.testing import conformance_tests

test_conformance = conformance_tests("zoo-tabular")
