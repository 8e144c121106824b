"""Errors shared by the settings modules."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or malformed; the service refuses to start."""
