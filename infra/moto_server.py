"""moto_server (pinned in infra/requirements.txt) with fixes the tests need, applied before it
starts. Arguments as for `moto_server`.

1. DynamoDB requests are handled one at a time. moto's werkzeug server runs each request on a
   thread, and its TransactWriteItems rolls a cancelled transaction back by putting a copy of
   the whole table back: a write another thread made meanwhile was undone, and a copy taken
   while another thread wrote failed with "dictionary changed size during iteration" (a 500).
   DynamoDB does neither.
2. That copy covers only the items the transaction touches, and a rollback also drops the
   stream records the cancelled writes added. moto deep-copied the whole table with its
   stream on every transaction: seconds and gigabytes once a table holds a few thousand items
   (the fault test's), and a stream whose kept iterators no longer saw new records after a
   rollback, with records of writes that never happened.
3. SQS SendMessage and ReceiveMessage no longer compute every queue attribute (counting every
   message in the queue) for each message, to learn whether a FIFO queue deduplicates by
   content and how long messages are kept: with a few thousand messages queued, a send took
   a second and a receive several.
"""

import copy
import sys
import threading
import types
from collections import defaultdict

import moto
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.core.utils import unix_time
from moto.sqs.models import Queue, SQSBackend

if moto.__version__ != "5.2.5":
    sys.exit(f"infra/moto_server.py patches moto 5.2.5, not {moto.__version__}")

_one_at_a_time = threading.RLock()
_call_action = DynamoHandler.call_action


def _locked_call_action(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _locked_call_action

# The keys each table's transaction touches, while it runs.
_touched = threading.local()


def _snapshot(table, keys):
    """A table whose item index is a copy and whose touched items are copies; everything else
    (untouched items, indexes, the stream) is shared with the live table."""
    snap = copy.copy(table)
    snap.items = defaultdict(dict)
    for hash_value, value in table.items.items():
        snap.items[hash_value] = dict(value) if table.has_range_key else value
    for key in keys:
        if table.hash_key_attr not in key:
            continue
        hash_value = DynamoType(key[table.hash_key_attr])
        if table.has_range_key:
            if table.range_key_attr not in key:
                continue
            range_value = DynamoType(key[table.range_key_attr])
            item = table.items.get(hash_value, {}).get(range_value)
            if item is not None:
                snap.items[hash_value][range_value] = copy.deepcopy(item)
        elif hash_value in table.items:
            snap.items[hash_value] = copy.deepcopy(table.items[hash_value])
    return snap


def _deepcopy(value, memo=None):
    keys = getattr(_touched, "keys", None)
    if keys is not None and isinstance(value, Table):
        return _snapshot(value, keys.get(value.name, []))
    return copy.deepcopy(value, memo)


dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)
_transact_write_items = DynamoDBBackend.transact_write_items


def _key_of(table, op):
    if "Key" in op:
        return op["Key"]
    item = op.get("Item", {})
    return {a: item[a] for a in (table.hash_key_attr, table.range_key_attr) if a and a in item}


def _transact_write_items_patched(self, transact_items):
    keys = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        if table is not None:
            keys.setdefault(table.name, []).append(_key_of(table, op))
    stream_lengths = {
        name: len(self.tables[name].stream_shard.items)
        for name in keys
        if getattr(self.tables[name], "stream_shard", None) is not None
    }
    _touched.keys = keys
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for name, length in stream_lengths.items():
            del self.tables[name].stream_shard.items[length:]
        raise
    finally:
        _touched.keys = None


DynamoDBBackend.transact_write_items = _transact_write_items_patched

_queue_attributes = Queue.attributes
_sending = threading.local()


def _attributes_when_sending(self):
    if getattr(_sending, "active", False) and not self.fifo_queue:
        return {}
    return _queue_attributes.fget(self)


Queue.attributes = property(_attributes_when_sending)
_send_message = SQSBackend.send_message


def _send_message_patched(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


SQSBackend.send_message = _send_message_patched


def _is_message_valid_based_on_retention_period(self, queue_name, message):
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _is_message_valid_based_on_retention_period

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
