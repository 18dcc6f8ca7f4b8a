"""What the fake services share: serve a handler class on a free loopback port.

The port is printed on stdout (one line) for the test that started the fake; end-of-file
on stdin means that test is gone, and the fake exits with it, so a crashed test never
leaves a server behind.
"""
import os
import sys
import threading
from http.server import ThreadingHTTPServer


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
