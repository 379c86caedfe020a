"""Config-driven sequence-to-sequence training with a universal Performer layer stack."""

__version__ = "0.1.0"
