"""Which ledger and job store a front-end uses, from the command line (API.md, "Scaling out")."""

from __future__ import annotations

from server.config import Config
from server.shared import AttachedLedgerHost, Frontend
from store.channel import LedgerChannel
from store.jobstore import JobStore
from store.manager import LedgerHost
from store.sharedledger import EmbeddedStore


def open_store(config: Config, frontend: Frontend) -> tuple[LedgerHost, JobStore | None]:
    """The ledger's host (what workers journal results through) and the shared job store, if any:
    - one front-end, no --store: the embedded ledger in a manager process this process owns;
    - several front-ends, no --store: the node's parent owns a shared ledger; this one attaches;
    - --store redis://...: Redis is both (store/redisstore.py)."""
    if config.store is not None:
        from store.redisstore import RedisLedger, RedisStore  # only when asked: redis is an extra

        retention = (config.keep_results, config.keep_mb * 2**20, config.results_ttl_s)
        redis_store = RedisStore(config.store, retention)
        return AttachedLedgerHost(RedisLedger(config.store, retention), journal=redis_store.finish), redis_store
    if frontend.ledger_address is not None:
        store = EmbeddedStore(frontend.ledger_address)
        return AttachedLedgerHost(LedgerChannel(store.channel.address), store.channel.address, store.channel), store
    return LedgerHost(str(config.state_dir), config.fsync), None
