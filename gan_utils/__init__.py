"""gan_utils: the small library behind the book "Generative Adversarial Networks for Computer Vision".

Importing it has no side effects: nothing is seeded, downloaded or moved to a GPU.
"""

from gan_utils.runtime import budget, default_device, is_quick_mode, set_seed

__all__ = ["budget", "default_device", "is_quick_mode", "set_seed"]
__version__ = "0.1.0"
