"""facegan: train, sample and evaluate GANs that generate faces."""

__version__ = "0.1.0"
