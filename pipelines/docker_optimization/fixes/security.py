"""Security fixes."""

from __future__ import annotations
