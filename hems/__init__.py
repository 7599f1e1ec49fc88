"""hems: the home-energy-management daemon and the community manager (decisions)."""

__version__ = "0.1.0"
