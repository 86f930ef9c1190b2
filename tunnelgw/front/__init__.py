"""
The HTTP front: listeners serve one twisted.web site (L{tunnelgw.front.site}),
whose channel (L{tunnelgw.front.channel}) reads each request head, with a
fast path for upgrades (L{tunnelgw.front.upgrade}); its resources are the
services, the health and refresh endpoints and the reverse links.
"""
