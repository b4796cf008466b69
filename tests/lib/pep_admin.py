#!/usr/bin/python3
"""One-shot PEP operation as an account, from another resource: what a
second client of the same account (or a server admin) can do to the
account's nodes behind an agent's back.

Why this exists: the agent's periodic OMEMO re-check (spec/agent.md) must
notice a device list or bundle that disappeared without a notification it
acts on.  The e2e tests produce that situation with this script.

    /usr/bin/python3 tests/lib/pep_admin.py --jid agent@localhost --password pw \
        --port N delete NODE

Prints `ok` and exits 0 when the server answered the IQ with a result;
prints the error and exits 1 otherwise.  Plaintext to 127.0.0.1 only
(the test Prosody), no DNS.
"""

import argparse
import asyncio
import sys

import slixmpp


class OneShot(slixmpp.ClientXMPP):
    def __init__(self, jid, password, node):
        super().__init__(jid + "/pep-admin", password)
        self.node = node
        self.outcome = None
        self.register_plugin("xep_0060")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda *_: self.finish("auth failed"))

    async def _pick_dns_answer(self, domain, port=None):
        return None

    async def start(self, _):
        try:
            await self["xep_0060"].delete_node(self.boundjid.bare, self.node, timeout=10)
            self.finish("ok")
        except Exception as e:  # IqError, IqTimeout
            self.finish("error: %s" % e)

    def finish(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
            self.disconnect()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jid", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("op", choices=["delete"])
    ap.add_argument("node")
    args = ap.parse_args()
    c = OneShot(args.jid, args.password, args.node)
    c.connect(address=("127.0.0.1", args.port), use_ssl=False, force_starttls=False,
              disable_starttls=True)
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(c.disconnected, 30))
    print(c.outcome or "error: no outcome")
    return 0 if c.outcome == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
