"""A small fault-injecting TCP proxy for the server-fault suite: the agent
connects to 127.0.0.1:proxy.port, the proxy to Prosody.

    p = FaultProxy(upstream_port); p.start()
    p.cut()              close every connection now (both sides see EOF)
    p.blackhole(True)    keep connections open but drop all data both ways
    p.delay = 2.0        hold every chunk this many seconds before forwarding
    p.refuse = True      new connections are accepted and closed at once
    p.stop()
"""

import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.delay = 0.0
        self.refuse = False
        self._black = False
        self._lock = threading.Lock()
        self._pairs = []
        self._stop = False
        self.accepted = 0
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]

    def start(self):
        self.srv.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.accepted += 1
            if self.refuse:
                c.close()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            pair = [c, u]
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        c, u = pair
        peer = {c: u, u: c}
        pending = []        # (due, dst, data)
        try:
            while not self._stop and pair in self._pairs:
                r, _, _ = select.select([c, u], [], [], 0.05)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        raise EOFError
                    if self._black:
                        continue
                    pending.append((time.time() + self.delay, peer[s], data))
                now = time.time()
                while pending and pending[0][0] <= now:
                    _, dst, data = pending.pop(0)
                    dst.sendall(data)
        except (OSError, EOFError):
            pass
        finally:
            for s in pair:
                try:
                    s.close()
                except OSError:
                    pass
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)

    def connections(self):
        with self._lock:
            return len(self._pairs)

    def cut(self):
        """Every open connection closed now (shutdown: both ends see EOF)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def blackhole(self, on=True):
        self._black = on

    def stop(self):
        self._stop = True
        self.cut()
        try:
            self.srv.close()
        except OSError:
            pass
