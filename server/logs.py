"""webserver.log: a rotating file written by a listener thread, never by the event loop.

Handlers only put records on a queue (QueueHandler); formatting and file writes happen in the
QueueListener's thread. The call log's lines (two per request) skip the logging machinery
altogether: a tuple on the queue, formatted straight into the file by the listener. Timestamps are UTC.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "lestats"
CALLS_LOGGER = "lestats.http"
STOP = None  # what QueueListener.stop() puts on the queue
# A record, or a call line as (time, message, args) for the listener to write, or STOP.
CallItem = logging.LogRecord | tuple[float, str, tuple[object, ...]] | None
CallQueue = queue.SimpleQueue[CallItem]
FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"


class BatchedRotatingFileHandler(RotatingFileHandler):
    """A rotating file that is flushed once per batch of records, not once per record.

    The standard handler flushes (a write syscall) and stats the file twice for every record, which
    at thousands of requests a second cost more than the requests themselves.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._written = path.stat().st_size if path.exists() else 0

    def shouldRollover(self, record: logging.LogRecord | None) -> bool:
        return self.maxBytes > 0 and self._written >= self.maxBytes

    def doRollover(self) -> None:
        super().doRollover()
        self._written = 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self._written += len(record.getMessage()) + 64

    def write_call(self, created: float, message: str, args: tuple[object, ...]) -> None:
        """A call-log line, in FORMAT, without a LogRecord or a Formatter: building those cost the
        listener thread more CPU than the event loop spent on the request."""
        line = f"{utc_stamp(int(created))}.{int((created % 1) * 1000):03d}Z INFO {CALLS_LOGGER}: {message % args}\n"
        self.acquire()
        try:
            if self.shouldRollover(None):
                self.doRollover()
            if self.stream is not None:
                self.stream.write(line)
                self._written += len(line)
        finally:
            self.release()

    def flush(self) -> None:
        """Flushing happens in `flush_batch`, called by the listener when the queue runs dry."""

    def flush_batch(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.flush()
        finally:
            self.release()

    def close(self) -> None:
        self.flush_batch()
        super().close()


class BatchingQueueListener(QueueListener):
    """Handles every record already queued, flushes once, then pauses briefly.

    The pause lets records pile up, so the thread wakes (and takes the GIL from the event loop)
    a few times a second under load instead of once per record.
    """

    pause_s = 0.05

    def __init__(self, records: CallQueue, file: BatchedRotatingFileHandler) -> None:
        super().__init__(records, file, respect_handler_level=True)
        self.records = records
        self.file = file

    def _monitor(self) -> None:
        while True:
            record: CallItem = self.dequeue(True)
            batch = [record]
            while record is not STOP and not self.records.empty():
                record = self.dequeue(False)
                batch.append(record)
            for item in batch:
                if isinstance(item, tuple):
                    self.file.write_call(*item)
                elif item is not STOP:
                    self.handle(item)
            self.file.flush_batch()
            if batch[-1] is STOP:
                return
            time.sleep(self.pause_s)


@functools.lru_cache(maxsize=4)
def utc_stamp(second: int) -> str:
    """ISO 8601 UTC date and time to the second (a few seconds cached: it is asked once per line)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class UTCFormatter(logging.Formatter):
    """ISO 8601 UTC timestamps."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_stamp(int(record.created))


class CallLog:
    """The entry and exit lines of HTTP calls, queued as plain tuples.

    Two lines per request made the event loop build two LogRecords per request; here it only puts
    a tuple on the listener's queue, and the listener thread builds the record.
    """

    def __init__(self) -> None:
        self.records: CallQueue = queue.SimpleQueue()
        self._put = self.records.put

    def enter(self, method: str, path: str, params: object) -> None:
        self._put((time.time(), "enter %s %s %s", (method, path, params)))

    def exit(self, method: str, path: str, status: int) -> None:
        self._put((time.time(), "exit %s %s %d", (method, path, status)))


class DeferredQueueHandler(QueueHandler):
    """Queue the record as it is: the listener formats it, off the event loop's time."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def start_logging(path: Path, calls: CallLog, max_bytes: int = 20 * 2**20, backups: int = 5) -> QueueListener:
    """Route the service's loggers and its call log to `path`; stop the listener to flush and close.

    Records skip what nobody reads (the caller's file and line, thread and process names), as the
    logging HOWTO's "Optimization" section describes: each request logs twice.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = UTCFormatter(FORMAT)
    file_handler = BatchedRotatingFileHandler(path, max_bytes, backups)
    file_handler.setFormatter(formatter)
    records = calls.records
    listener = BatchingQueueListener(records, file_handler)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(DeferredQueueHandler(records))
    listener.start()
    return listener


def stop_logging(listener: QueueListener) -> None:
    listener.stop()
    for handler in listener.handlers:
        handler.close()
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
