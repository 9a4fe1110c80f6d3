"""tradepulse: real-time trade analytics for fast-moving tokens."""

__version__ = "0.1.0"
