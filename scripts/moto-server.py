#!/usr/bin/env python3
"""moto server, one request at a time.

`moto_server` runs werkzeug threaded, and moto's DynamoDB backend does not lock: two conditional
writes racing on one item can both succeed, which real DynamoDB never allows. The exactly-once
tests depend on that guarantee, so the project serves moto from a single thread: every request,
conditional writes included, is then atomic, as it is in AWS.

Prints the port it listens on as its first line of output: with `-p 0` the OS picks a free one,
so concurrent tests never race for a port between choosing it and binding it.

usage: moto-server.py [-H HOST] [-p PORT]
"""
import argparse
import os

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=5000)
    a = p.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(a.host, a.port, app, threaded=False, request_handler=MotoRequestHandler)
    # moto reads MOTO_PORT when it builds URLs, so it must be the port actually bound.
    os.environ["MOTO_PORT"] = str(server.server_port)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
