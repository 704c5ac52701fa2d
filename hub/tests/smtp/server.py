"""A real SMTP server for the hub's e-mail notification tests (aiosmtpd).

Usage: server.py PORT READY_FILE MAILDIR [--cert PEM --key PEM] [--user NAME --password PW]

Listens on 127.0.0.1:PORT (READY_FILE appears once it accepts), offers
STARTTLS when given a certificate (and then requires it), requires AUTH PLAIN/LOGIN
with the given credentials when given them, and stores every accepted message in
MAILDIR (Maildir format). Stops on SIGTERM.
"""

import argparse
import mailbox
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Store:
    def __init__(self, maildir):
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.maildir.add(envelope.original_content)
        return "250 OK stored"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("ready_file")
    parser.add_argument("maildir")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        return AuthResult(success=ok, handled=False)

    kwargs = {}
    if args.user:
        kwargs.update(
            authenticator=authenticate,
            auth_require_tls=bool(tls_context),
            auth_required=True,
        )
    controller = Controller(
        Store(args.maildir),
        hostname="127.0.0.1",
        port=args.port,
        tls_context=tls_context,
        require_starttls=bool(tls_context),
        **kwargs,
    )
    controller.start()
    with open(args.ready_file, "w") as f:
        f.write("ready\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    sys.exit(main())
