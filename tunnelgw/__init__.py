"""
tunnelgw: a WebSocket gateway to TCP services, on Twisted.
"""

from tunnelgw.config import ConfigError, GatewayConfig, ServiceConfig, load, loads

__all__ = ["ConfigError", "GatewayConfig", "ServiceConfig", "load", "loads", "__version__"]

__version__ = "0.1.0"
