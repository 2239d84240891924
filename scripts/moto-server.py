#!/usr/bin/env python3
"""moto server, one request at a time.

`moto_server` runs werkzeug threaded, and moto's DynamoDB backend does not lock: two conditional
writes racing on one item can both succeed, which real DynamoDB never allows. The exactly-once
tests depend on that guarantee, so the project serves moto from a single thread: every request,
conditional writes included, is then atomic, as it is in AWS.

moto's DynamoDB `TransactWriteItems` deep-copies every table it touches before it starts, so that
it can roll back: O(table) per call, seconds per transaction once a table holds a few thousand
items, where DynamoDB takes milliseconds. `fast_transactions` makes the rollback snapshot hold
only the items the transaction names. All-or-nothing is unchanged (tests/aws_adapters.rs checks
that a cancelled transaction leaves every item as it was).

Two per-request costs that AWS does not have are removed, as they change no answer: moto lists its
own package directory (an `isdir` per entry, about 150) on every request to route it, and werkzeug
writes a log line per request. Together they were about a tenth of the DynamoDB process's CPU and
a quarter of the KMS one's under the benchmark (py-spy). The listing cannot change while the
server runs, so it is read once; errors are still logged.

Multi-Region keys encrypt and decrypt: moto packs a key id into 36 bytes of its (private)
ciphertext blob, and a multi-Region key's id (`mrk-` and 36 more) has 40, so its Decrypt never found
the key. `multi_region_keys` widens the field to 40 and strips the padding; the blob stays moto's
own, and every answer is as before.

Prints the port it listens on as its first line of output: with `-p 0` the OS picks a free one,
so concurrent tests never race for a port between choosing it and binding it.

usage: moto-server.py [-H HOST] [-p PORT]
"""
import argparse
import copy
import inspect
import os

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def fast_transactions():
    """Snapshot only the items a transaction names, not whole tables (see the module's doc)."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    backend = models.DynamoDBBackend
    original = backend.transact_write_items
    source = inspect.getsource(original)
    if "original_table_state" not in source or "copy.deepcopy(" not in source:
        return  # a moto whose transactions are not the ones this was written for: leave it be

    class TablesByReference:
        """`copy` for moto's DynamoDB models, except that a Table is not copied."""

        def __getattr__(self, name):
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value, memo=None):
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    models.copy = TablesByReference()

    def keys(table, op):
        attrs = op.get("Item") if "Item" in op else op.get("Key", {})
        hash_key = DynamoType(attrs[table.hash_key_attr])
        range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
        return hash_key, range_key

    def restore(table, hash_key, range_key, item):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        elif item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item

    def transact_write_items(self, transact_items):
        before = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            try:
                hash_key, range_key = keys(table, op)
            except (AttributeError, KeyError, TypeError):
                continue  # moto itself refuses the malformed entry
            before.append((table, hash_key, range_key,
                           copy.deepcopy(table.get_item(hash_key, range_key))))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(before):
                restore(table, hash_key, range_key, item)
            raise

    backend.transact_write_items = transact_write_items


def multi_region_keys():
    """Ciphertext blobs with room for a multi-Region key's id (see the module's doc)."""
    import struct

    import moto.kms.utils as kms_utils

    if getattr(kms_utils, "KEY_ID_LEN", None) != 36:
        return  # a moto whose blob is not the one this was written for: leave it be
    kms_utils.KEY_ID_LEN = 40
    kms_utils.HEADER_LEN = kms_utils.KEY_ID_LEN + kms_utils.IV_LEN + kms_utils.TAG_LEN
    kms_utils.CIPHERTEXT_HEADER_FORMAT = f">{kms_utils.KEY_ID_LEN}s{kms_utils.IV_LEN}s{kms_utils.TAG_LEN}s"

    def deserialize(ciphertext_blob):
        header = ciphertext_blob[:kms_utils.HEADER_LEN]
        key_id, iv, tag = struct.unpack(kms_utils.CIPHERTEXT_HEADER_FORMAT, header)
        return kms_utils.Ciphertext(key_id=key_id.rstrip(b"\0").decode("utf-8"), iv=iv,
                                    ciphertext=ciphertext_blob[kms_utils.HEADER_LEN:], tag=tag)

    kms_utils._deserialize_ciphertext_blob = deserialize


def fewer_per_request_costs():
    """Route without re-listing moto's package directory each time (see the module's doc)."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


class QuietRequestHandler(MotoRequestHandler):
    """moto's handler without werkzeug's line per request; errors are still logged."""

    def log_request(self, *args, **kwargs):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=5000)
    a = p.parse_args()
    fast_transactions()
    multi_region_keys()
    fewer_per_request_costs()
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(a.host, a.port, app, threaded=False, request_handler=QuietRequestHandler)
    # moto reads MOTO_PORT when it builds URLs, so it must be the port actually bound.
    os.environ["MOTO_PORT"] = str(server.server_port)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
