"""rlbook: the code of the book *Deep Reinforcement Learning, Hands On and Tested*.

Chapters import from here; every function links back to the chapter that introduces it.
"""

from rlbook.core import budget, is_quick, resolve_device, seed_everything

__version__ = "0.1.0"

__all__ = ["__version__", "budget", "is_quick", "resolve_device", "seed_everything"]
