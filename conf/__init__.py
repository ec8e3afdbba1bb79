"""The zoo's Hydra config tree, installed as the package ``zoo.conf``."""
