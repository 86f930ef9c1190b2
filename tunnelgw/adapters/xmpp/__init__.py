"""
XMPP over WebSocket (RFC 7395) bridged to an XMPP server's client port
(RFC 6120): the hardened XML streams (L{tunnelgw.adapters.xmpp.xml}) and
the translating, checking adapter (L{tunnelgw.adapters.xmpp.adapter}).
"""
