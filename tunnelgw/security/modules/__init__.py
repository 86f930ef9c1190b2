"""
The login modules shipped with tunnelgw, one module each: C{anonymous},
C{address}, C{password_file}, C{jwt}, C{client_cert}, C{introspection},
C{assertion}; C{base} is what they (and plugins) build on.
L{tunnelgw.registry} lists them, with those other packages add.
"""
