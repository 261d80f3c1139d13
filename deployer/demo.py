"""`./run demo` until the local cloud lands: a local server switches release under the poller."""

from __future__ import annotations

import http.server
import sys
import threading

from deployer.cli import main

COMMITS = {"old": "c85ab49", "new": "4b96ff6"}


def serve() -> tuple[http.server.ThreadingHTTPServer, dict[str, str]]:
    state = {"commit": COMMITS["old"]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>Etherpad</html>"
            self.send_response(200)
            self.send_header("Server", f"Etherpad {state['commit']} (https://etherpad.org)")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def version_string(self) -> str:
            return f"Etherpad {state['commit']} (https://etherpad.org)"

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


if __name__ == "__main__":
    server, state = serve()
    threading.Timer(2.5, lambda: state.update(commit=COMMITS["new"])).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    main(["probe", url, "--duration", "5", *sys.argv[1:]])
