"""A worker process for the multi-process tests: runs the real engine with a
module that records every call (start and end) to a JSON-lines file.

usage: python workerproc.py DB_URL LOG_FILE [--lease S] [--hang] [--concurrency N]
Exits when no operation is left unfinished (or is killed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from sqlalchemy import func, select

from fulfil.app import Fulfil
from fulfil.models import Operation
from fulfil.module import Done
from fulfil.plugins import ModuleRegistry
from fulfil.testing import FakeModule


class RecordingModule(FakeModule):
    def __init__(self, log_path: str, hang: bool) -> None:
        super().__init__()
        self.log_path = log_path
        self.hang = hang

    def _write(self, **row) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _outcome(self, ctx):
        self._write(event="start", key=ctx.operation_id, service=ctx.service.id, kind=ctx.kind,
                    t=time.time(), pid=os.getpid(), attempt=ctx.attempt)
        time.sleep(0.02)
        if self.hang:
            time.sleep(3600)
        self._write(event="end", key=ctx.operation_id, service=ctx.service.id, t=time.time(), pid=os.getpid())
        return Done()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log")
    parser.add_argument("--lease", type=float, default=30)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--go", help="wait until this file exists before working (a start line)")
    args = parser.parse_args()
    registry = ModuleRegistry.empty()
    registry.register_module("recording", RecordingModule(args.log, args.hang))
    app = Fulfil(args.url, registry=registry)
    worker = app.worker(concurrency=args.concurrency, lease_seconds=args.lease, poll_interval=0.05)
    if args.go:
        print("ready", flush=True)
        while not os.path.exists(args.go):
            time.sleep(0.01)
    worker.start()
    print("started", flush=True)
    try:
        while True:
            time.sleep(0.2)
            with app.session(read_only=True) as s:
                left = s.scalar(select(func.count()).select_from(Operation).where(Operation.state.in_(("pending", "running"))))
            if not left:
                break
    finally:
        worker.stop()
        app.dispose()


if __name__ == "__main__":
    sys.exit(main())
