"""The ceiling: an aiohttp server with our routes that does no work at all.

It answers POST /api/<query> with a job id and get_results with the finished reply at once, from
a memo of replies computed in-process on first use (so after warm-up it returns the same result
sizes as the real service without any pool, ledger, logging or validation beyond a lookup).
Only for bench/: it shows how much of a load test's cost is aiohttp and the client themselves.
With `--processes N`, N such servers share the port (SO_REUSEPORT), each with its own jobs (ids
never collide): the floor of what one more process costs, with nothing shared between them
(bench/scaleout.py). A keep-alive client mostly reads a job on the connection that posted it; a
read that lands on another process gets 404 "Invalid job_id" (the load client counts an error).

    python bench/nowork_server.py --data FILE --port 5002 [--processes 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
from pathlib import Path

import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compute.queries import KERNELS, run_query
from store.dataset import load_dataset


def make_app(data: Path, index: int = 0, processes: int = 1) -> web.Application:
    """`index` of `processes` sharing the port: job ids index+1, index+1+processes, ..."""
    dataset = load_dataset(data)
    memo: dict[bytes, bytes] = {}
    replies: dict[int, bytes] = {}

    async def submit(request: web.Request) -> web.Response:
        body = await request.read()
        key = request.match_info["query"].encode() + body
        reply = memo.get(key)
        if reply is None:
            fields = orjson.loads(body)
            data = run_query(dataset, request.match_info["query"], fields["question"], fields.get("state"))
            reply = memo[key] = orjson.dumps({"status": "done", "data": data})
        job_id = len(replies) * processes + index + 1
        replies[job_id] = reply
        return web.Response(body=b'{"job_id":"job_id_%d"}' % job_id, content_type="application/json")

    async def get_results(request: web.Request) -> web.Response:
        job_id = int(request.match_info["job_id"].removeprefix("job_id_"))
        if job_id not in replies:
            return web.json_response({"status": "error", "reason": "Invalid job_id"}, status=404)
        return web.Response(body=replies[job_id], content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/{{query:{}}}".format("|".join(KERNELS)), submit)
    app.router.add_get("/api/get_results/{job_id}", get_results)
    app.router.add_get("/api/num_jobs", lambda request: web.json_response({"num_jobs": 0}))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--processes", type=int, default=1, help="servers sharing the port (SO_REUSEPORT)")
    args = parser.parse_args()
    if args.processes == 1:
        serve(args.data, args.port)
        return
    children = [
        multiprocessing.Process(target=serve, args=(args.data, args.port, index, args.processes))
        for index in range(args.processes)
    ]
    for child in children:
        child.start()
    signal.signal(signal.SIGTERM, lambda signum, frame: [child.terminate() for child in children])
    for child in children:
        child.join()


def serve(data: Path, port: int, index: int = 0, processes: int = 1) -> None:
    app = make_app(data, index, processes)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=processes > 1)


if __name__ == "__main__":
    main()
