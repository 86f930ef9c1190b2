"""
Adapters: the protocol logic of a tunnel, one module (or package) per
protocol family: C{raw}, C{echo}, C{rfb}, C{stomp}, C{xmpp}; the C{chain}
adapter is in L{tunnelgw.upstream.chain}.  L{tunnelgw.registry} lists
them, with those other packages add.
"""
