"""gdkvm: reproduce and benchmark GDKVM."""

__version__ = "0.1.0"
