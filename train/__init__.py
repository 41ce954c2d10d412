"""Training, evaluation and publishing commands (``python -m train.<command>``).

Every command starts by importing this package, which applies the process's CPU settings before torch loads
(``fracture_demo.runtime``: allocator, OpenMP threads).
"""
from fracture_demo import runtime

runtime.apply()
