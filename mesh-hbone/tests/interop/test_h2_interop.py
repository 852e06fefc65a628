"""HBONE interop between mesh-hbone and an independent HTTP/2 stack: the Python `h2` package over `ssl`.

mesh-hbone runs as the `hbone_peer` example binary (path in `HBONE_PEER`, or found under target/debug/examples;
build it with `cargo build -p mesh-hbone --features tokio --example hbone_peer`). Both directions are tested:

- Python as the HBONE client of the Rust server: TLS 1.3, ALPN h2, a client SVID, the chain verified against
  the mesh root without host name checks (HBONE has no SNI), then CONNECT streams on one HTTP/2 connection.
- The Rust client tunnelling through a Python HBONE server that answers CONNECT with 200 and echoes DATA.
- Double HBONE: the Rust client through a Python gateway, which terminates the outer tunnel and forwards its
  bytes to the Rust server, with which the client runs the inner mTLS handshake and CONNECT end to end.

Every socket is on 127.0.0.1.
"""

import contextlib
import os
import select
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

pytestmark = pytest.mark.loopback

LOOPBACK = "127.0.0.1"
DENIED_PORT = 9999
TRUST_DOMAIN = "cluster.local"
SERVER_ID = f"spiffe://{TRUST_DOMAIN}/ns/interop/sa/server"
CLIENT_ID = f"spiffe://{TRUST_DOMAIN}/ns/interop/sa/client"
TIMEOUT = 20
REPO = Path(__file__).resolve().parents[3]


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def peer():
    """The hbone_peer example binary."""
    explicit = os.environ.get("HBONE_PEER")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        path = target / "debug" / "examples" / ("hbone_peer.exe" if os.name == "nt" else "hbone_peer")
    if not path.is_file():
        pytest.fail(
            f"{path} not found: run `cargo build -p mesh-hbone --features tokio --example hbone_peer` "
            "or set HBONE_PEER"
        )
    return str(path)


@pytest.fixture
def certs(peer, tmp_path):
    """A root CA and SVIDs for `server` and `client`, written by the Rust side."""
    directory = tmp_path / "certs"
    subprocess.run([peer, "certs", str(directory)], check=True, timeout=TIMEOUT)
    return directory


@pytest.fixture
def echo():
    """A TCP echo server thread; yields its port. Each connection is echoed until EOF, then half-closed."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def serve_one(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def accept_loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def rust_server(peer, certs):
    """The Rust HBONE server, denying DENIED_PORT; yields its (host, port)."""
    with rust_server_process(peer, certs, "--deny-port", str(DENIED_PORT)) as address:
        yield address


@contextlib.contextmanager
def rust_server_process(peer, certs, *options):
    """Runs `hbone_peer server` with `options`; yields its (host, port). It stops when its stdin closes."""
    process = subprocess.Popen(
        [peer, "server", f"{LOOPBACK}:0", str(certs), *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line, f"the server printed no address (exit status {process.poll()})"
        host, port = line.rsplit(":", 1)
        assert host == LOOPBACK
        yield host, int(port)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0


# --- TLS as HBONE speaks it ------------------------------------------------------------------------------------


def tls13_context(purpose, certs, own=None):
    """TLS 1.3 only, ALPN h2, peers verified against the mesh root; `own` names the SVID to present."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT if purpose == "client" else ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    # HBONE names peers by SPIFFE ID (URI SAN), not DNS: no host name check, but the chain must verify.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(certs / "root-cert.pem"))
    if own:
        context.load_cert_chain(str(certs / own / "cert-chain.pem"), str(certs / own / "key.pem"))
    context.set_alpn_protocols(["h2"])
    return context


def spiffe_ids(tls):
    """The URI SANs of the peer's verified certificate."""
    return [value for kind, value in tls.getpeercert().get("subjectAltName", ()) if kind == "URI"]


def dial(address, context):
    sock = socket.create_connection(address, timeout=TIMEOUT)
    # No SNI: HBONE clients send none.
    tls = context.wrap_socket(sock, server_hostname=None)
    assert tls.version() == "TLSv1.3"
    assert tls.selected_alpn_protocol() == "h2"
    return tls


# --- a blocking HTTP/2 endpoint over h2 -------------------------------------------------------------------------


class H2Peer:
    """One HTTP/2 connection over a TLS socket, driven synchronously with Python's h2."""

    def __init__(self, tls, client_side):
        self.tls = tls
        config = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.received = {}  # stream id -> bytearray
        self.ended = set()  # streams the peer ended (END_STREAM) or reset
        self.responses = {}  # stream id -> headers
        self.requests = {}  # stream id -> headers
        self.closed = False
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.tls.sendall(data)

    def pump(self):
        """Reads once from the socket and records what it brought."""
        data = self.tls.recv(1 << 20)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
                # Give the window back as the bytes are taken.
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                self.responses[event.stream_id] = dict(event.headers)
            elif isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = dict(event.headers)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()
        return events

    def pump_until(self, done):
        while not done():
            if self.closed:
                raise ConnectionError("the HTTP/2 connection closed")
            self.pump()

    def send(self, stream_id, data, end_stream=False):
        """Sends `data` on a stream within the peer's flow-control windows, reading while it waits."""
        view = memoryview(data)
        while view:
            allowed = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if allowed <= 0:
                self.pump()
                continue
            self.conn.send_data(stream_id, bytes(view[:allowed]))
            self.flush()
            view = view[allowed:]
        if end_stream:
            self.conn.end_stream(stream_id)
            self.flush()

    def connect(self, authority):
        """Sends a CONNECT and waits for its response; returns the stream id and the status."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(":method", "CONNECT"), (":authority", authority)])
        self.flush()
        self.pump_until(lambda: stream_id in self.responses or stream_id in self.ended)
        status = self.responses.get(stream_id, {}).get(":status")
        return stream_id, int(status) if status else None


# --- Python client, Rust server --------------------------------------------------------------------------------


def test_python_client_tunnels_through_rust_server(certs, echo, rust_server):
    with dial(rust_server, tls13_context("client", certs, own="client")) as tls:
        assert spiffe_ids(tls) == [SERVER_ID]
        peer = H2Peer(tls, client_side=True)
        stream_id, status = peer.connect(f"{LOOPBACK}:{echo}")
        assert status == 200
        # ztunnel's settings reached the Python side intact.
        remote = peer.conn.remote_settings
        assert remote[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 200
        assert remote[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 4 * 1024 * 1024
        # Several times Python's 64 KiB default window, so flow control turns over in both directions.
        payload = os.urandom(512 * 1024)
        peer.send(stream_id, payload, end_stream=True)
        peer.pump_until(lambda: stream_id in peer.ended)
        assert bytes(peer.received.get(stream_id, b"")) == payload


def test_python_client_gets_the_status_table(certs, echo, rust_server):
    closed = socket.socket()
    closed.bind((LOOPBACK, 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with dial(rust_server, tls13_context("client", certs, own="client")) as tls:
        peer = H2Peer(tls, client_side=True)
        assert peer.connect(f"{LOOPBACK}:{DENIED_PORT}")[1] == 401  # policy denial (--deny-port)
        assert peer.connect("127.0.0.2:80")[1] == 400  # not the address that was dialled
        assert peer.connect("no-port-here")[1] == 400  # malformed authority
        assert peer.connect(f"{LOOPBACK}:15008")[1] == 503  # the proxy's own port
        assert peer.connect(f"{LOOPBACK}:{closed_port}")[1] == 503  # nothing listens upstream
        # Refusals are per stream: the connection still carries a tunnel.
        stream_id, status = peer.connect(f"{LOOPBACK}:{echo}")
        assert status == 200
        peer.send(stream_id, b"still here", end_stream=True)
        peer.pump_until(lambda: stream_id in peer.ended)
        assert bytes(peer.received[stream_id]) == b"still here"


def test_rust_server_requires_a_client_certificate(certs, rust_server):
    with pytest.raises(ssl.SSLError) as refused:
        # Without a client certificate the TLS 1.3 handshake completes on the client's side; the server's alert
        # arrives with the first read, and names the reason.
        with dial(rust_server, tls13_context("client", certs)) as tls:
            peer = H2Peer(tls, client_side=True)
            peer.connect(f"{LOOPBACK}:80")
    assert "CERTIFICATE_REQUIRED" in str(refused.value), refused.value


def test_python_client_rejects_a_server_from_another_ca(peer, tmp_path, rust_server):
    other = tmp_path / "other"
    subprocess.run([peer, "certs", str(other)], check=True, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError):
        dial(rust_server, tls13_context("client", other, own="client"))


# --- Rust client, Python server --------------------------------------------------------------------------------


class TlsServerThread:
    """A TLS 1.3 server in a thread presenting the `server` SVID and requiring a client SVID; one connection at a
    time is handed to `handle`. What a connection raises is kept in `errors` for the test to report."""

    def __init__(self, certs):
        self.context = tls13_context("server", certs, own="server")
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen()
        self.address = self.listener.getsockname()
        self.clients = []  # URI SANs of each client
        self.requests = []  # CONNECT headers
        self.errors = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            try:
                sock.settimeout(TIMEOUT)
                with self.context.wrap_socket(sock, server_side=True) as tls:
                    assert tls.version() == "TLSv1.3"
                    assert tls.selected_alpn_protocol() == "h2"
                    self.clients.append(spiffe_ids(tls))
                    self.handle(tls)
            except Exception as error:  # reported by the test, not lost in the thread
                self.errors.append(error)

    def handle(self, tls):
        raise NotImplementedError

    def close(self):
        self.listener.close()


class PythonHboneServer(TlsServerThread):
    """An HBONE server: answers CONNECT with 200 (401 for DENIED_PORT) and echoes each stream's DATA, ending its
    side when the client ends."""

    def handle(self, tls):
        peer = H2Peer(tls, client_side=False)
        answered = set()
        echoed = {}  # stream id -> bytes echoed so far, for open tunnels
        while not peer.closed:
            try:
                peer.pump()
            except (ssl.SSLError, ConnectionError):
                return
            # Requests are read from what the peer recorded: `send` below may pump while it waits.
            for stream_id, headers in list(peer.requests.items()):
                if stream_id in answered:
                    continue
                answered.add(stream_id)
                self.requests.append(headers)
                port = headers.get(":authority", "").rpartition(":")[2]
                if headers.get(":method") != "CONNECT":
                    peer.conn.send_headers(stream_id, [(":status", "400")], end_stream=True)
                elif port == str(DENIED_PORT):
                    peer.conn.send_headers(stream_id, [(":status", "401")], end_stream=True)
                else:
                    peer.conn.send_headers(stream_id, [(":status", "200")])
                    echoed[stream_id] = 0
            for stream_id, done in list(echoed.items()):
                data = peer.received.get(stream_id, b"")
                if len(data) > done:
                    echoed[stream_id] = len(data)
                    peer.send(stream_id, bytes(data[done:]))
                if stream_id in peer.ended and echoed[stream_id] == len(peer.received.get(stream_id, b"")):
                    peer.conn.end_stream(stream_id)
                    del echoed[stream_id]
            peer.flush()


@pytest.fixture
def python_server(certs):
    server = PythonHboneServer(certs)
    yield server
    server.close()
    assert not server.errors, server.errors


def run_rust_client(peer, certs, server, target, data):
    address = f"{server.address[0]}:{server.address[1]}"
    return subprocess.run(
        [peer, "client", address, str(certs), target], input=data, capture_output=True, timeout=TIMEOUT
    )


def test_rust_client_tunnels_through_python_server(peer, certs, python_server):
    # Larger than the Python server's 64 KiB windows: the Rust client must wait for WINDOW_UPDATEs.
    payload = os.urandom(300 * 1024)
    result = run_rust_client(peer, certs, python_server, f"{LOOPBACK}:8080", payload)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == payload
    assert python_server.clients == [[CLIENT_ID]]
    (request,) = python_server.requests
    assert request[":method"] == "CONNECT"
    assert request[":authority"] == f"{LOOPBACK}:8080"
    # CONNECT carries no :scheme or :path (RFC 9113 section 8.5); the client adds a W3C traceparent.
    assert ":scheme" not in request and ":path" not in request
    assert request["traceparent"].startswith("00-")


def test_rust_client_reports_a_refusal_from_python_server(peer, certs, python_server):
    result = run_rust_client(peer, certs, python_server, f"{LOOPBACK}:{DENIED_PORT}", b"")
    assert result.returncode == 2, result.stderr.decode()
    assert b"refused: 401" in result.stderr


@pytest.fixture
def failing_upstream():
    """A TCP server that sends 10,000 bytes to each connection, then resets it (RST, not FIN); yields its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen()

    def serve_one(conn):
        conn.sendall(b"x" * 10_000)
        # Linger 0: close() sends RST.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def accept_loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_rust_client_fails_on_a_tunnel_cut_short(peer, certs, rust_server, failing_upstream):
    # The upstream resets mid-transfer: the server resets the stream with CONNECT_ERROR, and the client must
    # not exit 0 with part of the bytes.
    host, port = rust_server
    result = subprocess.run(
        [peer, "client", f"{host}:{port}", str(certs), f"{LOOPBACK}:{failing_upstream}"],
        input=b"",
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 3, (result.returncode, result.stderr.decode())
    assert b"tunnel cut short" in result.stderr and b"CONNECT_ERROR" in result.stderr, result.stderr.decode()
    assert len(result.stdout) <= 10_000


# --- double HBONE: Rust client, Python gateway, Rust destination ------------------------------------------------

SERVICE = "reviews.interop.svc.cluster.local"
SERVICE_PORT = 9080
DENIED_NETWORK = "network-denied"


class PythonHboneGateway(TlsServerThread):
    """A network gateway: terminates the outer HBONE tunnel, and for a CONNECT to SERVICE:SERVICE_PORT opens
    TCP to the destination's HBONE address and forwards the stream's bytes both ways without looking into them
    (the inner TLS is the client's and the destination's). Any other authority gets 503."""

    def __init__(self, certs, destination):
        self.destination = destination
        super().__init__(certs)

    def handle(self, tls):
        peer = H2Peer(tls, client_side=False)
        answered = set()
        upstreams = {}  # stream id -> socket to the destination
        forwarded = {}  # stream id -> bytes of the stream forwarded so far
        while not peer.closed:
            # ssl may hold decrypted bytes select() cannot see.
            ready = [tls] if tls.pending() else select.select([tls, *upstreams.values()], [], [], TIMEOUT)[0]
            if not ready:
                raise TimeoutError("the gateway saw nothing for a while")
            for readable in ready:
                if readable is tls:
                    try:
                        peer.pump()
                    except (ssl.SSLError, ConnectionError):
                        return
                    continue
                stream_id = next(i for i, upstream in upstreams.items() if upstream is readable)
                data = readable.recv(65536)
                if data:
                    peer.send(stream_id, data)
                else:  # the destination is done sending: end the stream's side
                    peer.conn.end_stream(stream_id)
                    del upstreams[stream_id]
                    readable.close()
            for stream_id, headers in list(peer.requests.items()):
                if stream_id in answered:
                    continue
                answered.add(stream_id)
                self.requests.append(headers)
                if headers.get(":authority") != f"{SERVICE}:{SERVICE_PORT}":
                    peer.conn.send_headers(stream_id, [(":status", "503")], end_stream=True)
                    continue
                upstreams[stream_id] = socket.create_connection(self.destination, timeout=TIMEOUT)
                forwarded[stream_id] = 0
                peer.conn.send_headers(stream_id, [(":status", "200")])
            for stream_id, done in list(forwarded.items()):
                data = peer.received.get(stream_id, b"")
                upstream = upstreams.get(stream_id)
                if len(data) > done and upstream:
                    upstream.sendall(bytes(data[done:]))
                    forwarded[stream_id] = len(data)
                if stream_id in peer.ended and forwarded[stream_id] == len(data):
                    if upstream:
                        upstream.shutdown(socket.SHUT_WR)
                    del forwarded[stream_id]
            peer.flush()


@pytest.fixture
def double_hbone(peer, certs, echo):
    """The Rust destination (serving SERVICE:SERVICE_PORT from the echo server, denying DENIED_NETWORK) behind
    a Python gateway; yields the gateway."""
    service = f"{SERVICE}:{SERVICE_PORT}={echo}"
    with rust_server_process(peer, certs, "--service", service, "--deny-network", DENIED_NETWORK) as destination:
        gateway = PythonHboneGateway(certs, destination)
        yield gateway
        gateway.close()
        assert not gateway.errors, gateway.errors


def run_rust_double(peer, certs, gateway, network, data):
    address = f"{gateway.address[0]}:{gateway.address[1]}"
    destination = f"{SERVICE}:{SERVICE_PORT}"
    return subprocess.run(
        [peer, "double", address, str(certs), destination, network],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
    )


def test_rust_client_tunnels_through_a_python_gateway(peer, certs, double_hbone):
    # Larger than the gateway's 64 KiB windows, so the outer tunnel's flow control turns over.
    payload = os.urandom(400 * 1024)
    result = run_rust_double(peer, certs, double_hbone, "network-a", payload)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == payload
    assert double_hbone.clients == [[CLIENT_ID]]
    (outer,) = double_hbone.requests
    assert outer[":method"] == "CONNECT"
    # The outer CONNECT names the service, as the inner one does; only the inner one names the network.
    assert outer[":authority"] == f"{SERVICE}:{SERVICE_PORT}"
    assert "x-forwarded-network" not in outer
    assert outer["traceparent"].startswith("00-")


def test_the_destination_decides_on_the_inner_connect(peer, certs, double_hbone):
    # The destination's policy sees x-forwarded-network, which only the inner CONNECT carries.
    result = run_rust_double(peer, certs, double_hbone, DENIED_NETWORK, b"")
    assert result.returncode == 2, result.stderr.decode()
    assert b"refused by destination: 401" in result.stderr
