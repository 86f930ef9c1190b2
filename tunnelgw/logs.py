"""
Log output for operators.

Every tunnelgw event is a twisted.logger event with named fields (C{event},
C{conn_id}, C{peer}, C{service}, C{subprotocol}, C{principal}, C{status},
C{code}, C{reason}, byte counts...).  For machine-readable logs run::

    twistd -n --logger tunnelgw.logs.json_observer tunnelgw --config FILE

which writes one JSON object per event to standard output (record-separated,
as L{twisted.logger.jsonFileLogObserver} does; read it back with
L{twisted.logger.eventsFromJSONLogFile}).
"""

from __future__ import annotations

import sys

from twisted.logger import FileLogObserver, jsonFileLogObserver

__all__ = ["json_observer"]


def json_observer() -> FileLogObserver:
    """
    A twistd C{--logger} factory: JSON events to standard output.
    """
    return jsonFileLogObserver(sys.stdout)
