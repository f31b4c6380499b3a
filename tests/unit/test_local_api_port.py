"""`thyme server start` right after `thyme server stop` (make demo twice in a row): the stopped server's port
is left with TIME-WAIT connections for a minute, which a plain bind() counts as "in use" though the server
(SO_REUSEADDR) would start. Only a live listener may make the port busy."""

from __future__ import annotations

import socket

from tasks.local_api import _port_free


def test_a_port_with_only_time_wait_connections_is_free_and_a_listening_one_is_not():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.listen()
    assert not _port_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection, on `port`, goes to TIME-WAIT
    client.close()
    server.close()
    assert _port_free(port)
