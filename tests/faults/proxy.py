"""A TCP proxy on a loopback port, for cutting or freezing one process's link to a server."""

import contextlib
import socket
import threading


class Proxy:
    """Forwards connections on `port` to 127.0.0.1:`target_port`. `freeze()` stops
    forwarding in both directions while every connection stays open (a link gone quiet:
    the peer waits, nothing errors); `thaw()` lets the held bytes through. `cut_after(b"…")`
    drops the next connection that sends those bytes once the server has them, before any
    answer gets back (a statement applied, its acknowledgement lost)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        self._cut_after: bytes | None = None
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def cut_after(self, needle: bytes) -> None:
        self._cut_after = needle

    def close(self) -> None:
        self._flowing.set()
        for sock in [self.listener, *self._sockets]:
            _hang_up(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            answers = threading.Event()  # cleared: the server's answers are held back
            answers.set()
            pumps = ((client, upstream, answers, True), (upstream, client, answers, False))
            for source, sink, gate, outbound in pumps:
                threading.Thread(
                    target=self._pump, args=(source, sink, gate, outbound), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, answers: threading.Event, outbound: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                if not outbound:
                    answers.wait(5)
                    if not answers.is_set():
                        return
                sink.sendall(data)
                if outbound and self._cut_after is not None and self._cut_after in data:
                    self._cut_after = None
                    answers.clear()  # the server works on it; its answer never arrives
                    threading.Timer(0.5, self._drop, args=(source, sink)).start()
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _drop(self, *sockets: socket.socket) -> None:
        self.cuts += 1
        for sock in sockets:
            _hang_up(sock)


def _hang_up(sock: socket.socket) -> None:
    """Close `sock` so that its peer sees it at once (a plain close leaves the connection
    open while another thread still waits on it)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
