"""generic_client_request.py: a client that sends one request to a sender and prints the response.

The server address, the sender, the method and its parameters are read from
stdin (a blank answer takes the default; the parameters are JSON if they
parse, else the text as is):

    Server IP   (default: 127.0.0.1):
    Server port (default: 3000):
    Sender      (default: timer):
    Method      (default: get_ticks):
    Params      (default: None):
    [sig][  57][             connect][    info]-[TCP_CL] Connecting to 127.0.0.1:3000
    [sig][  62][            <module>][    info]-[timer] Response to get_ticks: 3

The timer sender of generic_server.py answers ``get_ticks``.
"""

import json
import sys

from _prompt import ask, ask_data, ask_int, ask_name

import sig
from sig.carrier.tcpclient import CarrierTCPClient

if __name__ == "__main__":
    host = ask("Server IP", "127.0.0.1")
    port = ask_int("Server port", 3000)
    sender = ask_name("Sender", "timer")
    method = ask_name("Method", "get_ticks")
    params = ask_data("Params", None)

    # setup logging
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_INFO)
    sig.setup_logger(logger)

    # create the tcp carrier and the client router; one request: no reconnecting
    tcpclient = CarrierTCPClient()
    client = sig.ClientRouter(tcpclient)
    if not tcpclient.connect(host, port, auto_reconnect=False):
        logger.error("Cannot connect to %s:%s" % (host, port))
        sys.exit(1)

    status = 0
    try:
        response = client.remoteRequest(sender, method, params)
        logger.info("[%s] Response to %s: %s" % (sender, method, json.dumps(response)))
    except sig.SigError as exc:
        logger.error("[%s] Request %s failed: %s" % (sender, method, exc))
        status = 1
    finally:
        tcpclient.disconnect()
    sys.exit(status)
