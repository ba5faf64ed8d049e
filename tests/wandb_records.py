"""Reading what an offline wandb run recorded, from its transaction log (wandb 0.31 writes no summary files)."""

import json
import struct
import time
from pathlib import Path
from types import SimpleNamespace

from wandb.proto import wandb_internal_pb2

LOG_BLOCK = 32768


def log_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The complete records of a ``run-<id>.wandb`` transaction log.

    LevelDB log format: a 7-byte file header, then records of 7-byte headers (crc, length, type) and data, split
    into chunks that never cross a 32 KiB block boundary. A record still being written is left out.
    """
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, pos = [], b"", 7
    while pos + 7 <= len(data):
        if LOG_BLOCK - pos % LOG_BLOCK < 7:  # a block tail too short for a header is padding
            pos += LOG_BLOCK - pos % LOG_BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):
            break
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(chunks))
            chunks = b""
    return records


def read_run(run_dir: Path, timeout: float = 20.0) -> SimpleNamespace:
    """What an offline run recorded: its run record, config, summary, sample tables and exit code.

    wandb 0.31 writes neither ``wandb-summary.json`` nor ``config.yaml`` for offline runs, so the transaction log
    is read; wandb-core may still be writing it when ``wandb.finish`` returns, hence the wait for the exit record.
    """
    path = next(run_dir.glob("run-*.wandb"))
    deadline = time.monotonic() + timeout
    records = log_records(path)
    while not any(record.HasField("exit") for record in records):
        assert time.monotonic() < deadline, f"{path} has no exit record"
        time.sleep(0.1)
        records = log_records(path)
    run = SimpleNamespace(config={}, summary={}, tables={}, exit_code=None)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run = record.run
        elif kind in ("config", "summary"):
            for item in getattr(record, kind).update:
                *parents, key = [item.key] if item.key else item.nested_key
                tree = getattr(run, kind)
                for parent in parents:
                    tree = tree.setdefault(parent, {})
                tree[key] = json.loads(item.value_json)
        elif kind == "artifact":  # tables are logged as artifacts too; offline, their files stay staged
            for entry in record.artifact.manifest.contents:
                if entry.path.endswith(".table.json"):
                    run.tables[entry.path.removesuffix(".table.json")] = json.loads(Path(entry.local_path).read_text())
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
