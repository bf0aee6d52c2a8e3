"""Real protocol peers on loopback for the probes tests, started once per session.

Every server listens on 127.0.0.1 on a free port; fixtures poll until it answers (no blind sleeps)
and stop it at session end. A missing program skips the tests that need it, with a reason;
tests/conftest.py turns such skips into failures when CI=true.

Fixtures (all session-scoped, each yields a Peer unless noted):
    closed_port      int: a port that refuses connections (bound, never listening)
    silent_server    accepts TCP connections and never says a word
    blackhole_server connect() hangs: a listener with a full accept queue drops SYNs
    udp_silent       UDP port that never answers
    udp_junk         UDP port that answers every datagram with non-DNS bytes
    http_server      Python http.server: / /health /missing /redirect /vhost
    tls_cert         TlsCert: self-signed cert (openssl CLI) valid for TLS_CERT_DAYS days
    https_server     the same handler over TLS with tls_cert
    smtp_server      aiosmtpd
    ftp_server       pyftpdlib (anonymous, read-only)
    dns_server       dnsmasq: www.example.test A 127.0.0.9, txt.example.test TXT only,
                     other *.example.test NXDOMAIN
    pop3_server, imap_server   one dovecot instance with its own config and base_dir
    nntp_server      INN's tinyleaf behind a tiny inetd-style Python acceptor
    telnet_server    busybox telnetd
    ssh_server       OpenSSH sshd with its own host key and config
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers.processes import wait_until_ready

HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
TLS_CERT_DAYS = 10
HTTP_HEALTH_BODY = b"OK healthy\n"
DNS_NAME = "www.example.test"
DNS_ADDRESS = "127.0.0.9"
DNS_MISSING = "nope.example.test"
DNS_TXT_ONLY = "txt.example.test"  # exists, but has no A record (NOERROR, empty answer)
TINYLEAF_PATHS = ("/usr/lib/news/bin/tinyleaf", "/usr/libexec/news/tinyleaf")


@dataclass(frozen=True)
class Peer:
    host: str
    port: int

    def url(self, scheme: str, rest: str = "") -> str:
        return f"{scheme}://{self.host}:{self.port}{rest}"


@dataclass(frozen=True)
class TlsCert:
    cert: Path
    key: Path
    days: int


# --- helpers ----------------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP (dnsmasq needs both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def need(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{program} not installed (see .ci/apt-packages.txt)")
    return path


def wait_ready(port: int, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll until the TCP port accepts; fail fast with the log if the server died."""
    def accepts() -> bool:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True

    wait_until_ready(f"server on port {port}", proc, accepts, log, READY_TIMEOUT)


@contextlib.contextmanager
def daemon(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """Run a foreground server process for the session, ready when `port` accepts."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(port, proc, log)
        yield proc
    finally:
        # the whole group: dovecot's and sshd's children go with their master
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def serve_in_thread(target, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


# --- black holes and junk ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    # Bound but not listening: the kernel answers SYN with RST, and nobody else can take the port.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def silent_server() -> Iterator[Peer]:
    # Listening, never accepting: the handshake completes in the backlog, then nothing ever comes.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(1024)
        yield Peer(HOST, sock.getsockname()[1])


@pytest.fixture(scope="session")
def blackhole_server() -> Iterator[Peer]:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs
    # like it does for a vanished host, without a packet leaving loopback.
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.socket())
        sock.bind((HOST, 0))
        sock.listen(0)
        addr = sock.getsockname()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(addr)
            try:  # full once a plain connect no longer gets through
                socket.create_connection(addr, timeout=0.2).close()
            except TimeoutError:
                break
        else:
            raise RuntimeError("could not fill the black hole's accept queue")
        yield Peer(HOST, addr[1])


@pytest.fixture(scope="session")
def udp_silent() -> Iterator[Peer]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield Peer(HOST, sock.getsockname()[1])


@pytest.fixture(scope="session")
def udp_junk() -> Iterator[Peer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                _data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(b"HTTP/1.0 400", addr)  # 12 bytes: a header's worth, nonsense as DNS

    thread = serve_in_thread(answer, "udp-junk")
    yield Peer(HOST, sock.getsockname()[1])
    stop.set()
    thread.join(2)
    sock.close()


# --- HTTP and HTTPS ---------------------------------------------------------------------------


HTTP_ROUTES: dict[str, tuple[int, bytes]] = {
    "/": (200, b"hello from the ctop test server\n"),
    "/health": (200, HTTP_HEALTH_BODY),
    "/missing": (404, b"no such page\n"),
    "/redirect": (302, b""),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/vhost":
            code, body = 200, f"vhost={self.headers.get('Host')}\n".encode()
        else:
            code, body = HTTP_ROUTES.get(self.path, (404, b"no such page\n"))
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "/health")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops SYNs when many probes connect at once
    daemon_threads = True


@contextlib.contextmanager
def _http(context: ssl.SSLContext | None) -> Iterator[Peer]:
    server = _Server((HOST, 0), _Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    serve_in_thread(lambda: server.serve_forever(poll_interval=0.1), "http")
    port = server.server_address[1]
    wait_ready(port)
    try:
        yield Peer(HOST, port)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def http_server() -> Iterator[Peer]:
    with _http(None) as peer:
        yield peer


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsCert:
    openssl = need("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(TLS_CERT_DAYS),
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return TlsCert(cert, key, TLS_CERT_DAYS)


@pytest.fixture(scope="session")
def https_server(tls_cert: TlsCert) -> Iterator[Peer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert.cert, tls_cert.key)
    with _http(context) as peer:
        yield peer


# --- mail, files, news ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Peer]:
    controller_mod = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd not installed")
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = controller_mod.Controller(Sink(), hostname=HOST, port=port, ready_timeout=10)
    controller.start()  # returns once the server answers its own probe connection
    try:
        yield Peer(HOST, port)
    finally:
        controller.stop()


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    servers = pytest.importorskip("pyftpdlib.servers", reason="pyftpdlib not installed")
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler

    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(tmp_path_factory.mktemp("ftp")))
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    server = servers.FTPServer((HOST, 0), handler)
    thread = serve_in_thread(
        lambda: server.serve_forever(timeout=0.1, blocking=True, handle_exit=False), "ftp"
    )
    port = server.address[1]
    wait_ready(port)
    try:
        yield Peer(HOST, port)
    finally:
        server.close_all()
        thread.join(5)


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    dnsmasq = need("dnsmasq")
    folder = tmp_path_factory.mktemp("dnsmasq")
    port = free_tcp_udp_port()
    argv = [
        dnsmasq,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        f"--port={port}",
        f"--listen-address={HOST}",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        f"--user={getpass.getuser()}",
        "--log-facility=-",
        "--local=/example.test/",  # names under example.test not listed below get NXDOMAIN
        f"--address=/{DNS_NAME}/{DNS_ADDRESS}",
        f"--txt-record={DNS_TXT_ONLY},ctop probes test",
    ]
    with daemon(argv, port, folder / "dnsmasq.log"):
        yield Peer(HOST, port)


DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = ctop-probes-test
listen = 127.0.0.1
protocols = pop3 imap
ssl = no
log_path = /dev/stderr
auth_mechanisms = plain
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={dir}/home
}}
mail_location = maildir:{dir}/mail
{users}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Peer]]:
    binary = need("dovecot")
    folder = tmp_path_factory.mktemp("dovecot")
    pop3, imap = free_port(), free_port()
    # as root dovecot uses its packaged dovenull/dovecot users; otherwise everything runs as us
    users = (
        ""
        if os.geteuid() == 0
        else (
            f"default_login_user = {getpass.getuser()}\ndefault_internal_user = {getpass.getuser()}"
        )
    )
    conf = folder / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=folder, pop3=pop3, imap=imap, users=users))
    with daemon([binary, "-F", "-c", str(conf)], pop3, folder / "dovecot.log"):
        wait_ready(imap)
        yield {"pop3": Peer(HOST, pop3), "imap": Peer(HOST, imap)}


@pytest.fixture(scope="session")
def pop3_server(dovecot: dict[str, Peer]) -> Peer:
    return dovecot["pop3"]


@pytest.fixture(scope="session")
def imap_server(dovecot: dict[str, Peer]) -> Peer:
    return dovecot["imap"]


@pytest.fixture(scope="session")
def nntp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    tinyleaf = next((p for p in TINYLEAF_PATHS if os.access(p, os.X_OK)), None)
    if tinyleaf is None:
        pytest.skip("INN's tinyleaf not installed (Debian package inn2)")
    spool = tmp_path_factory.mktemp("tinyleaf")
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()
    children: list[subprocess.Popen] = []

    def accept_loop() -> None:  # inetd's job: one tinyleaf per connection on the socket
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.setblocking(True)
                children.append(
                    subprocess.Popen(
                        [tinyleaf, str(spool)],
                        stdin=conn,
                        stdout=conn,
                        stderr=subprocess.DEVNULL,
                    )
                )
            children[:] = [c for c in children if c.poll() is None]

    thread = serve_in_thread(accept_loop, "nntp-inetd")
    port = listener.getsockname()[1]
    wait_ready(port)
    yield Peer(HOST, port)
    stop.set()
    thread.join(2)
    listener.close()
    for child in children:
        child.kill()
        child.wait(5)


# --- remote login ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def telnet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    busybox = need("busybox")
    probe = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=False)
    if "telnetd" not in probe.stdout.split():
        pytest.skip("this busybox has no telnetd applet (install busybox-static)")
    port = free_port()
    login = "/bin/login" if os.path.exists("/bin/login") else "/bin/false"
    argv = [busybox, "telnetd", "-F", "-p", str(port), "-b", HOST, "-l", login]
    with daemon(argv, port, tmp_path_factory.mktemp("telnetd") / "telnetd.log"):
        yield Peer(HOST, port)


SSHD_CONF = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
PidFile none
UsePAM no
StrictModes no
AuthorizedKeysFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
"""


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    sshd = need("sshd")
    keygen = need("ssh-keygen")
    folder = tmp_path_factory.mktemp("sshd")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_ed25519")],
        check=True,
        capture_output=True,
        timeout=30,
    )
    if os.geteuid() == 0:
        # the privilege-separation directory the packaged service would create at boot
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    port = free_port()
    conf = folder / "sshd_config"
    conf.write_text(SSHD_CONF.format(port=port, dir=folder))
    with daemon([sshd, "-D", "-e", "-f", str(conf)], port, folder / "sshd.log"):
        yield Peer(HOST, port)
