"""
Admission: one place where every transport (the WebSocket upgrade today;
the fallback transport and gateway links as well) is admitted or refused.

  - L{tunnelgw.admission.request}: what the pipeline knows of a request,
    whatever the transport, and what it admits;
  - L{tunnelgw.admission.checks}: the checks that need no I/O (limits,
    the WebSocket upgrade's syntax, the Origin, the subprotocol);
  - L{tunnelgw.admission.pipeline}: the pipeline, in order, with the
    login and the backend's connection.

Nothing here imports twisted.web.
"""
