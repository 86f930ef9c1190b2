"""
The WebSocket leg: autobahn, hardened (L{tunnelgw.websocket.server}), and
what every autobahn protocol serving as a tunnel leg does alike
(L{tunnelgw.websocket.leg}).
"""
