"""Reliability fixes."""

from __future__ import annotations
