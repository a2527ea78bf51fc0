"""Small stdlib-only programs the lab runs inside its namespaces.

Each is a Python source string run as `python3 -c SCRIPT ARGS...` through
`ip netns exec`, so nothing here imports logknock: the same scripts serve the
checkout and the installed Debian package.

- `LISTENER PORT...`: a TCP accept loop on `::` (IPv4 too) that greets every
  connection with `hello` and closes it; prints `ready` once it listens.
- `SEND SRC HOST DELAY STEP...`: one packet per `PORT/PROTO` step from the
  source address SRC (a UDP datagram `x`, or one TCP SYN that is dropped
  locally at once, as `logknock knock` sends it), DELAY seconds apart.
- `CONNECT HOST PORT SRC WITHIN EACH`: try TCP connections from SRC until one
  gets the greeting or WITHIN seconds pass, each attempt waiting EACH
  seconds for the handshake; prints `open SECONDS`, or how the last attempt
  ended (`timeout`: no answer at all, `refused`: a RST), and exits 0 for open.
"""

from __future__ import annotations

LISTENER = r"""
import selectors, socket, sys
selector = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("::", port))
    server.listen(64)
    selector.register(server, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in selector.select():
        conn, _ = key.fileobj.accept()
        with conn:
            conn.sendall(b"hello\n")
"""

SEND = r"""
import socket, struct, sys, time
src, host, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
for number, step in enumerate(sys.argv[4:]):
    if number:
        time.sleep(delay)
    port, proto = step.split("/")
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.bind((src, 0))
        if proto == "udp":
            sock.sendto(b"x", (host, int(port)))
        else:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.connect_ex((host, int(port)))
"""

CONNECT = r"""
import socket, sys, time
host, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
within, each = float(sys.argv[4]), float(sys.argv[5])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
start = time.monotonic()
while True:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(each)
        sock.bind((src, 0))
        try:
            sock.connect((host, port))
        except TimeoutError:
            result = "timeout"
        except ConnectionRefusedError:
            result = "refused"
        else:
            sock.settimeout(10)
            if sock.recv(16).startswith(b"hello"):
                print("open %.2f" % (time.monotonic() - start))
                sys.exit(0)
            result = "no greeting"
    if time.monotonic() - start >= within:
        print(result)
        sys.exit(1)
"""
