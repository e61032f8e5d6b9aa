"""generic_server.py: a pysig server that also hosts a sender firing an event periodically.

Everything is read from stdin, as documented (a blank answer takes the default):

    Log level   (default: info):
    Server bind (default: 0.0.0.0):
    Server port (default: 3000):
    Sender      (default: timer):
    Event       (default: tick):
    Event data  (default: None):server data
    Timer delay (default: 5):
    [sig][  53][               start][    info]-[TCP_SRV] Starting to listen on 0.0.0.0:3000
    [sig][  79][            <module>][    info]-[timer] Triggering event tick with data 'server data'

The sender also answers the request ``get_ticks`` (how many times it fired);
try it with generic_client_request.py. Sender ``None`` runs the server alone.
Stop with Ctrl-C.
"""

import sys
import time

from _prompt import ask, ask_data, ask_float, ask_int, ask_level, ask_name

import sig
from sig.carrier.tcpserver import CarrierTCPServer

ticks = 0


def get_ticks(params):
    """Answer the ``get_ticks`` request: how many times the event fired."""
    return ticks


if __name__ == "__main__":
    level = ask_level("Log level", "info")
    bind = ask("Server bind", "0.0.0.0")
    port = ask_int("Server port", 3000)
    sender = ask_name("Sender", "timer", allow_none=True)
    event = ask_name("Event", "tick", allow_none=sender is None)
    data = ask_data("Event data", None)
    delay = ask_float("Timer delay", 5)

    # setup logging
    logger = sig.SimpleLogger(level=level)
    sig.setup_logger(logger)

    # create the tcp carrier and the server router
    tcpserver = CarrierTCPServer()
    router = sig.ServerRouter(tcpserver)
    try:
        tcpserver.start(bind, port)
    except sig.CarrierError as exc:
        logger.error(str(exc))
        sys.exit(1)
    if port == 0:
        logger.info("Listening on port %s" % tcpserver.port)

    signal = None
    if sender is not None:
        senderobj = router.addSender(sender, [event], requests={"get_ticks": get_ticks})
        signal = senderobj.getSignal(event)

    try:
        while True:
            time.sleep(delay)
            if signal is not None:
                ticks += 1
                logger.info("[%s] Triggering event %s with data '%s'" % (sender, event, data))
                signal.trigger(data)
    except KeyboardInterrupt:
        logger.info("Stopping server..")
    finally:
        tcpserver.stop()
