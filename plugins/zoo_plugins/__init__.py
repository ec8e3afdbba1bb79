"""The zoo's first-party plugins.

They are registered through the ``zoo.plugins`` entry-point group in the zoo's own
``pyproject.toml``, exactly as a third-party distribution would register its plugins.
Registration modules (``datasets``, ``classifiers``, ``metrics``) import no TensorFlow;
the factories they register do, when called.
"""
