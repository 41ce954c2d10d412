"""Benchmarks behind the tables in ``docs/`` (``python -m bench.<name>``; not tests).

Every benchmark starts by importing this package, which applies the process's CPU settings before torch loads
(``fracture_demo.runtime``), as the app and the training commands do.
"""
from fracture_demo import runtime

runtime.apply()
