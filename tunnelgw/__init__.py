"""
tunnelgw: a WebSocket gateway to TCP services, on Twisted.
"""

from tunnelgw.config.loader import load, loads
from tunnelgw.config.model import GatewayConfig, ServiceConfig
from tunnelgw.config.values import ConfigError

__all__ = ["ConfigError", "GatewayConfig", "ServiceConfig", "load", "loads", "__version__"]

__version__ = "0.1.0"
