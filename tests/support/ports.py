"""A free loopback TCP port. Defined in serve.py (which must stand alone when loaded by path);
import it from here."""

from __future__ import annotations

from .serve import free_port

__all__ = ["free_port"]
