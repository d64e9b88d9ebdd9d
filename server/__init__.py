"""Bridgecast: live lecture broadcast from a central hub to provincial bridge points."""
__version__ = "0.1.0"
