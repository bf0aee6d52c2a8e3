"""Traffic peers for the IPVS VM checks, each run inside its own network namespace.

guest_peers.py server NAME ADDRESS PORT   HTTP/1.1 server whose every answer is NAME
guest_peers.py client VIP PORT            reads JSON commands on stdin, answers JSON lines:
    {"op": "get", "n": N}     N requests, each on a new TCP connection -> {"counts": {...}}
    {"op": "hold"}            open a keep-alive connection, one request -> {"id", "server"}
    {"op": "again", "id": I}  another request on held connection I -> {"server"}
    {"op": "close", "id": I}  close held connection I -> {"closed": I}
"""

from __future__ import annotations

import http.client
import json
import sys
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(name: str, address: str, port: int) -> None:
    body = name.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a held connection can ask again

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer((address, port), Handler).serve_forever()


def client(vip: str, port: int) -> None:
    held: list[http.client.HTTPConnection] = []

    def ask(conn: http.client.HTTPConnection, close: bool) -> str:
        conn.request("GET", "/", headers={"Connection": "close"} if close else {})
        return conn.getresponse().read().decode()

    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "get":
            counts: Counter[str] = Counter()
            for _ in range(cmd["n"]):
                conn = http.client.HTTPConnection(vip, port, timeout=5)
                try:
                    counts[ask(conn, close=True)] += 1
                except OSError as exc:
                    counts[f"error: {exc}"] += 1
                finally:
                    conn.close()
            reply: dict[str, object] = {"counts": dict(counts)}
        elif cmd["op"] == "hold":
            conn = http.client.HTTPConnection(vip, port, timeout=5)
            held.append(conn)
            reply = {"id": len(held) - 1, "server": ask(conn, close=False)}
        elif cmd["op"] == "again":
            reply = {"server": ask(held[cmd["id"]], close=False)}
        elif cmd["op"] == "close":
            held[cmd["id"]].close()
            reply = {"closed": cmd["id"]}
        else:
            reply = {"error": f"unknown op {cmd['op']!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        client(sys.argv[2], int(sys.argv[3]))
