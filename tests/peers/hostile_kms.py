"""A hostile AWS KMS endpoint for tests/hostile_kms.rs: HTTPS on loopback, with its own CA.

It answers every Decrypt with a data key of its choosing and echoes the requested KeyId, which is all a
forged endpoint needs to pass a client's response checks. It records every TCP connection it accepts (before
any TLS), so a test can assert that a message never made a client connect to it.

    python hostile_kms.py --dir DIR --port 443 --key-hex HEX

Writes DIR/ca.pem (the CA to trust, e.g. through SSL_CERT_FILE), then prints one JSON line
{"port": N, "ca": "DIR/ca.pem"} on stdout once it listens. Each accepted connection appends a line
"connect <peer>" to DIR/connections.log, and each request "request <X-Amz-Target> <KeyId>" after it.
It stops when its stdin closes, so it never outlives the test that started it.
"""

import argparse
import base64
import datetime
import http.server
import json
import os
import socket
import ssl
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import ipaddress


def make_certificates(directory):
    """A CA and a server certificate for 127.0.0.1, localhost and a few hostile host names."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kms-envelope hostile test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kms.evil.example"),
        x509.DNSName("kms.us-east-1.amazonaws.com"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_path = os.path.join(directory, "ca.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(pem))
    chain_path = os.path.join(directory, "server.pem")
    with open(chain_path, "wb") as f:
        f.write(cert.public_bytes(pem))
        f.write(ca.public_bytes(pem))
    key_path = os.path.join(directory, "server.key")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return ca_path, chain_path, key_path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key-hex", required=True, help="the data key every Decrypt returns")
    args = parser.parse_args()

    ca_path, chain_path, key_path = make_certificates(args.dir)
    log_path = os.path.join(args.dir, "connections.log")
    open(log_path, "w").close()
    log_lock = threading.Lock()
    forged_key = base64.b64encode(bytes.fromhex(args.key_hex)).decode()

    def log(line):
        with log_lock, open(log_path, "a") as f:
            f.write(line + "\n")
            f.flush()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or "0"))
            target = self.headers.get("X-Amz-Target", "")
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            key_id = request.get("KeyId", "")
            log("request %s %s %s" % (target, key_id, self.headers.get("Authorization", "")[:120]))
            if target.endswith(".Decrypt"):
                status, answer = 200, {
                    "KeyId": key_id,
                    "Plaintext": forged_key,
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                }
            else:
                status, answer = 400, {"__type": "AccessDeniedException", "message": "hostile test server"}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def get_request(self):
            sock, peer = self.socket.accept()
            log("connect %s:%d" % peer)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(chain_path, key_path)
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), peer

        def handle_error(self, request, client_address):
            pass  # untrusted-CA handshakes fail here, by design

    server = Server(("127.0.0.1", args.port), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": port, "ca": ca_path}), flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.shutdown()


if __name__ == "__main__":
    main()
