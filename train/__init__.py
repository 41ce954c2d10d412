"""Train, evaluate, audit and publish fracture classifiers (``python -m train --help``)."""
