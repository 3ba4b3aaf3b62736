"""webserver.log: a rotating file written by a listener thread, never by the event loop.

Handlers only put records on a queue (QueueHandler); formatting and file writes happen in the
QueueListener's thread. Timestamps are UTC.
"""

from __future__ import annotations

import logging
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler
from pathlib import Path

LOGGER_NAME = "lestats"
CALLS_LOGGER = "lestats.http"
STOP = None  # what QueueListener.stop() puts on the queue
FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"


class BatchedRotatingFileHandler(RotatingFileHandler):
    """A rotating file that is flushed once per batch of records, not once per record.

    The standard handler flushes (a write syscall) and stats the file twice for every record, which
    at thousands of requests a second cost more than the requests themselves.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._written = path.stat().st_size if path.exists() else 0

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return self.maxBytes > 0 and self._written >= self.maxBytes

    def doRollover(self) -> None:
        super().doRollover()
        self._written = 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self._written += len(record.getMessage()) + 64

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

    def __init__(self, records: queue.SimpleQueue, *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers, respect_handler_level=True)
        self.records = records

    def _monitor(self) -> None:
        while True:
            record = self.dequeue(True)
            batch = [record]
            while record is not STOP and not self.records.empty():
                record = self.dequeue(False)
                batch.append(record)
            for item in batch:
                if type(item) is tuple:
                    item = call_record(*item)
                if item is not STOP:
                    self.handle(item)
            for handler in self.handlers:
                if isinstance(handler, BatchedRotatingFileHandler):
                    handler.flush_batch()
            if batch[-1] is STOP:
                return
            time.sleep(self.pause_s)


class UTCFormatter(logging.Formatter):
    """ISO 8601 UTC timestamps, the date part formatted once per second rather than per record."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp


class CallLog:
    """The entry and exit lines of HTTP calls, queued as plain tuples.

    Two lines per request made the event loop build two LogRecords per request; here it only puts
    a tuple on the listener's queue, and the listener thread builds the record.
    """

    def __init__(self) -> None:
        self.records: queue.SimpleQueue = queue.SimpleQueue()
        self._put = self.records.put

    def line(self, message: str, *args: object) -> None:
        self._put((time.time(), message, args))


def call_record(created: float, message: str, args: tuple) -> logging.LogRecord:
    record = logging.LogRecord(CALLS_LOGGER, logging.INFO, "", 0, message, args, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


class DeferredQueueHandler(QueueHandler):
    """Queue the record as it is: the listener formats it, off the event loop's time."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def start_logging(path: Path, calls: CallLog, max_bytes: int = 20 * 2**20, backups: int = 5) -> QueueListener:
    """Route the service's loggers and its call log to `path`; stop the listener to flush and close.

    Records skip what nobody reads (the caller's file and line, thread and process names), as the
    logging HOWTO's "Optimization" section describes: each request logs twice.
    """
    logging._srcfile = None  # type: ignore[attr-defined]
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
