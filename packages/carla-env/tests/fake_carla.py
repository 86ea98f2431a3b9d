"""A stand-in for CARLA's engine binary, run by a stand-in CarlaUE4.sh in the tests.

``python fake_carla.py MODE PID_DIR CARLA-ARGS...``, where MODE is

- ``silent``: never opens the RPC port (an engine still loading, or hung);
- ``mute``: listens on the RPC port but never answers a call;
- ``rpc``: answers every call the way the real server answers ``version`` (msgpack-rpc, the
  protocol of CARLA's rpclib), so ``carla.Client.get_server_version()`` returns ``0.9.16``.

It prints its arguments (the server's log shows its command line, as CARLA's does) and writes
``engine-<port>.json`` in PID_DIR with its pid, parent pid and process group, so a test can
check that stopping the server left none of them alive.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

VERSION = b"0.9.16"
LIFETIME = 300.0  # seconds: a stand-in a failed test forgot still goes away on its own


def _msgid(request: bytes) -> bytes | None:
    """The encoded msgid of a msgpack-rpc request ``[0, msgid, method, params]``."""
    if len(request) < 3 or request[0] != 0x94 or request[1] != 0x00:
        return None
    tag = request[2]
    size = {0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9}.get(tag, 1 if tag < 0x80 else 0)
    return request[2:2 + size] if size and len(request) >= 2 + size else None


def _answer(conn: socket.socket) -> None:
    """Reply to every request on ``conn`` with CARLA's answer to ``version``.

    That is ``[1, msgid, nil, result]`` where the result is CARLA's ``rpc::Response<string>``:
    an array holding its variant, ``[1, "0.9.16"]`` (index 1: the value, not an error).
    """
    result = b"\x91\x92\x01" + bytes([0xa0 | len(VERSION)]) + VERSION
    with conn:
        while request := conn.recv(65536):
            msgid = _msgid(request)
            if msgid is not None:
                conn.sendall(b"\x94\x01" + msgid + b"\xc0" + result)


def _hold(conn: socket.socket) -> None:
    """Read and ignore requests: the port is open, the server never answers."""
    with conn:
        while conn.recv(65536):
            pass


def main() -> None:
    mode, pid_dir, *args = sys.argv[1:]
    print("fake CARLA engine:", " ".join(args), flush=True)
    port = int(next(a.split("=", 1)[1] for a in args if a.startswith("-carla-rpc-port=")))
    ids = {"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0)}
    path = os.path.join(pid_dir, f"engine-{port}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(ids, f)
    os.replace(path + ".tmp", path)
    end = time.monotonic() + LIFETIME
    if mode == "silent":
        time.sleep(LIFETIME)
        return
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(1.0)
    print(f"fake CARLA engine: listening on {port} ({mode})", flush=True)
    handler = _answer if mode == "rpc" else _hold
    while time.monotonic() < end:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
