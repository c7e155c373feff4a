"""recsys_lab: a research framework for CTR prediction and ads ranking."""

__version__ = "0.1.0"
