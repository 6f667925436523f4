"""Thawline: freeze risky payment accounts, explain why, and bring wrongly frozen ones back."""

__version__ = "0.1.0"
