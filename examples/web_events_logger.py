"""web_events_logger.py: a web page and a RESTful API over a live log of events.

A listener connected remotely to a pysig server, configured from stdin as
documented: the server, a queue limit (when full, the least recent entry is
dropped), then for each sender the events to listen to (``None`` means any;
a blank event ends the sender, a blank sender ends the list):

    Server IP   (default: 127.0.0.1):
    Server port (default: 3000):
    Queue limit (default: 20):200
    Sender 1:ifttt
    Event  1:None
    Event  2:
    Sender 2:keros
    Event  1:ir
    Event  2:
    Sender 3:None
    Event  1:#notify
    Event  2:
    Sender 4:
    ...-Registering to ifttt:None
    ...-done
    http://0.0.0.0:8080/

The RESTful API (every endpoint also takes ``fmt=json``):

    /                        the log; fmt=html (default) or plain; sender and event filter it
    /regs, /registrations    the subscriptions
    /clear, /flush           reset the log
    /config, /cfg            limit=N changes the queue limit; answers the configuration as JSON
    /add                     subscribe: sender=S&event=E (a missing one is None)
    /remove, /rem            unsubscribe: sender=S&event=E

The page updates itself as events arrive and can add and remove
subscriptions. As with web.py, an optional argument sets where it serves:
``python web_events_logger.py 127.0.0.1:8081`` (default 0.0.0.0:8080, as
documented). Needs aiohttp: ``pip install 'sig[web]'``. Stop with Ctrl-C.
"""

import sys

from _prompt import ask, ask_int, ask_subscriptions, fail

import sig
from sig.carrier.tcpclient import CarrierTCPClient
from sig_apps.web import WebLogger


def parse_http(text):
    """``[HOST:]PORT`` as web.py took it."""
    host, _, port = text.rpartition(":")
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        fail("the address to serve on must be [HOST:]PORT, not %r" % text)


if __name__ == "__main__":
    http_host, http_port = parse_http(sys.argv[1] if len(sys.argv) > 1 else "0.0.0.0:8080")
    host = ask("Server IP", "127.0.0.1")
    port = ask_int("Server port", 3000)
    limit = ask_int("Queue limit", 20)
    subscriptions = ask_subscriptions()

    # setup logging
    logger = sig.SimpleLogger(level=sig.LOG_LEVELS.LEVEL_INFO)
    sig.setup_logger(logger)

    # create the tcp carrier and the client router; connect (it keeps trying in the background)
    tcpclient = CarrierTCPClient()
    client = sig.ClientRouter(tcpclient)
    tcpclient.connect(host, port)

    try:
        weblog = WebLogger(client, limit=limit, server="%s:%s" % (host, port))
    except ValueError as exc:
        fail(str(exc))
    try:
        for sender, event in subscriptions:
            weblog.subscribe(sender, event)  # registered again by itself after a reconnection
        weblog.run(http_host, http_port, ready=print)
    except sig.SigError as exc:
        logger.error(str(exc))
        sys.exit(1)
    finally:
        tcpclient.disconnect()
