#!/usr/bin/env python3
"""moto server, one request at a time.

`moto_server` runs werkzeug threaded, and moto's DynamoDB backend does not lock: two conditional
writes racing on one item can both succeed, which real DynamoDB never allows. The exactly-once
tests depend on that guarantee, so the project serves moto from a single thread: every request,
conditional writes included, is then atomic, as it is in AWS.

usage: moto-server.py [-H HOST] [-p PORT]
"""
import argparse
import os

from werkzeug.serving import run_simple

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
    os.environ.setdefault("MOTO_PORT", str(a.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(a.host, a.port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
