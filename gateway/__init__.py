"""risk-gateway: a messaging gateway for financial risk control.

Regional nodes score payments natively, deliver risk alerts over priority lanes and keep a
tamper-evident record. The sans-IO core (``gateway.wire``, ``gateway.codec``, ...) does no
networking; ``gateway.node`` and ``gateway.client`` are the I/O shell.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
