"""Reads a wandb run's transaction log (run-ID.wandb: LevelDB's log format of protobuf
Records after a 7-byte W&B header), to check what an offline run wrote without a server."""

from __future__ import annotations

import json
import struct

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str) -> list[bytes]:
  data = open(path, "rb").read()
  assert data[:4] == b":W&B", "not a wandb transaction log"
  out, pending, pos = [], b"", HEADER
  while pos + HEADER <= len(data):
    left_in_block = BLOCK - pos % BLOCK
    if left_in_block < HEADER:  # The block's tail is padding.
      pos += left_in_block
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
    if length == 0 and kind == 0:
      break
    chunk = data[pos + HEADER:pos + HEADER + length]
    pos += HEADER + length
    if kind == FULL:
      out.append(chunk)
    elif kind == FIRST:
      pending = chunk
    elif kind == MIDDLE:
      pending += chunk
    elif kind == LAST:
      out.append(pending + chunk)
      pending = b""
  return out


def history(path: str) -> list[dict]:
  """Every logged row: {key: value (parsed JSON), '_step': step}."""
  from wandb.proto import wandb_internal_pb2  # noqa: PLC0415
  rows = []
  for raw in records(path):
    record = wandb_internal_pb2.Record()
    record.ParseFromString(raw)
    if record.WhichOneof("record_type") == "history":
      row = {}
      for item in record.history.item:
        key = item.key or "/".join(item.nested_key)
        row[key] = json.loads(item.value_json)
      rows.append(row)
  return rows
