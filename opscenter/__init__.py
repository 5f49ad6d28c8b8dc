"""Kernel of the Weihai government-cloud operations control center: settings, domain, CLI."""

__version__ = "0.1.0"
