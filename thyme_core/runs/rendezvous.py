"""Where the nodes of a multi-node run meet: node 0 publishes its rendezvous address in the store, the
others wait for it (bounded), then every node runs torchrun with a static rendezvous there (launch.Nodes).

The address lives under rendezvous/<run id>.json, where the run id names one attempt of one stage (the
pipeline adds its own flow run and attempt), so a retried attempt never meets the nodes of an earlier one.
A node that never gets the address fails after `timeout` seconds; a node that gets it but whose peers never
join fails after torchrun's join timeout: no node waits for ever. Node 0 also says whether its run is already
finished (its DONE: the same run key, done before), so the other nodes skip with it instead of starting ranks
that would wait for a node 0 that never starts any.
"""

from __future__ import annotations

import json
import os
import socket
import time

from thyme_core.base.errors import ThymeError
from thyme_core.runs.launch import Nodes, free_port
from thyme_core.versions.keys import ObjectMissing, Store

ADDR_ENV = "THYME_NODE_ADDR"  # this node's address as the others reach it (default: the host name's address)


def _key(run_id: str) -> str:
    return f"rendezvous/{run_id}.json"


def node_address() -> str:
    return os.environ.get(ADDR_ENV) or socket.gethostbyname(socket.gethostname())


def meet(store: Store, run_id: str, nnodes: int, node_rank: int, timeout: float = 120.0,
         poll: float = 0.5, finished: bool = False) -> Nodes:
    """This node's place in the run: node 0 publishes host:port (and `finished`: its run is already done),
    the others read it."""
    if nnodes == 1:
        return Nodes(finished=finished)
    if node_rank == 0:
        host = node_address()
        endpoint = f"{host}:{free_port(host)}"
        store.put_bytes(_key(run_id), json.dumps({"endpoint": endpoint, "finished": finished}).encode())
        return Nodes(nnodes, 0, endpoint, int(timeout), run_id, finished)
    deadline = time.monotonic() + timeout
    while True:
        try:
            record = json.loads(store.get_bytes(_key(run_id)))
            return Nodes(nnodes, node_rank, record["endpoint"], int(timeout), run_id, bool(record.get("finished")))
        except ObjectMissing:
            if time.monotonic() > deadline:
                raise ThymeError(f"node {node_rank} of {nnodes}: node 0 published no rendezvous address for run "
                                 f"{run_id} within {timeout:.0f} s") from None
            time.sleep(poll)
