"""The protoseg version (also ``protoseg.__version__``); a module of its own so that every file can
import it without importing the package's public entry points."""
from __future__ import annotations

__version__ = "0.1.0"
