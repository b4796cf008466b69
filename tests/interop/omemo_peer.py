#!/usr/bin/python3
"""Independent OMEMO test peer: slixmpp 1.8.3 + python-omemo 1.0.2 (oldmemo, or twomemo).

Why this exists: moonwire's OMEMO code (libsignal-protocol-c based) must be
tested against an implementation it shares no code with. This process is such
a peer: a real XMPP client speaking legacy OMEMO (eu.siacs.conversations.axolotl,
what Conversations/Dino/Gajim/Profanity deploy), driven over a JSON-lines
protocol so pytest suites and the demo can script it.

Run (always with /usr/bin/python3, the Debian interpreter that has the libs):

    /usr/bin/python3 tests/interop/omemo_peer.py --jid alice@localhost \
        --password pw --host 127.0.0.1 --port N --state DIR [--trust blind|manual] \
        [--omemo legacy|2]

--omemo 2 makes it an OMEMO 2 peer instead (python3-twomemo 1.0.3,
urn:xmpp:omemo:2): device list on urn:xmpp:omemo:2:devices, one bundle item
per device id on urn:xmpp:omemo:2:bundles, and the XEP-0420 envelope built
and checked here (slixmpp has no SCE plugin): <content><body>, <rpad>,
<from>, <to>, <time>; a received envelope whose <from> is not the sender,
or whose <to> is not this account, is a decrypt_error.

Its OMEMO storage (identity, device id, sessions, trust) is one JSON file,
DIR/omemo-storage.json, so a restarted peer keeps identity and sessions.

stdout, one JSON object per line:
  {"event":"ready","jid":J,"device_id":N,"fingerprint":HEX}   once connected,
      bundle and device list published (HEX: the 32-byte Curve25519 identity
      key, lowercase, no 0x05 prefix; Profanity's fingerprint without dashes)
  {"event":"message","from":BARE,"device_id":N,"body":S,"encrypted":true,
      "id":ID,"trust":"trusted|undecided|distrusted","delayed":bool}
  {"event":"message","from":BARE,"body":S,"encrypted":false,"id":ID,...}
  {"event":"chat_state","from":BARE,"state":"composing"|"active"|...,"body":BOOL,
   "no_store":BOOL,...}   one per XEP-0085 element, before its stanza's message
  {"event":"key_transport","from":BARE,"device_id":N,"id":ID}   an OMEMO
      message without payload (decrypted, ratchet advanced, no body)
  {"event":"decrypt_error","from":BARE,"device_id":N|null,"id":ID,"reason":S}
  {"event":"message_error","from":JID,"id":ID,"condition":S}    type=error
  {"event":"sent","to":BARE,"id":ID,"recipients":[{"jid","device_id","prekey"}]}
  {"event":"error","cmd":C,"reason":S}
  {"event":"trusted","jid":J,"fingerprint":F,"level":L,"device_ids":[...]}
  {"event":"devices","jid":J,"devices":[{"device_id","fingerprint","trust","active"}]}
  {"event":"bundle","jid":J,"device_id":N,"item_id":S,"prekey_ids":[...],
      "signed_prekey_id":N,"identity_key":B64}   the bundle item as Prosody
      serves it now (raw PEP fetch, parsed with ElementTree, not oldmemo)
  {"event":"pong","token":T}, {"event":"sent_plain",...}, {"event":"sent_raw"}
  {"event":"iq","from":JID,"id":ID,"type":"result|error","condition":S|null}
      an answer to an IQ the peer sent with send_raw (ids starting "raw-")
  {"event":"presence","from":JID,"type":T}   every presence (T: available,
      unavailable, subscribe, subscribed, unsubscribe, unsubscribed, ...)
  {"event":"disconnected"}, {"event":"reconnected"}   the peer reconnects by itself
  {"event":"fatal","reason":S}   then exit status 2
  {"event":"bye"}                after quit (or stdin EOF)

stdin commands, one JSON object per line:
  {"cmd":"send","to":BARE,"body":S}          encrypt to all devices (respecting trust)
  {"cmd":"send_plain","to":JID,"body":S}     unencrypted chat message
  {"cmd":"send_raw","xml":"<message .../>"}  written to the stream unchecked
  {"cmd":"trust","jid":J,"fingerprint":F[,"level":"trusted|distrusted|undecided"]}
  {"cmd":"devices","jid":J}
  {"cmd":"bundle","jid":J,"device_id":N}    fetch J's published bundle of N
  {"cmd":"ping","token":T}                   barrier: answered after earlier commands
  {"cmd":"quit"}

Trust: --trust blind trusts every device on first sight (TOFU; python-omemo
pins a device id to its first identity key forever); --trust manual encrypts
only to devices trusted with a trust command: sending to a recipient with an
undecided device fails with an error event (StillUndecided), and to one with
only distrusted devices too (NoEligibleDevices). A trust command always wins
over the mode; a fingerprint may be trusted before the device is ever seen.
The mode is a run-time policy: it is not stored in the state dir. Decryption
never depends on trust except for explicitly distrusted devices.

Quirks handled (see shared/notes/omemo-interop.md): the connection is pinned
to --host/--port (no DNS), plaintext + SCRAM; every <message> is taken by a
raw handler (slixmpp's message event skips body-less key-transport
messages) and decrypted strictly one at a time; after_history_sync() is
called after SessionManager.create(); bundles/device lists are published with
access_model=open; oldmemo serializes bundle children in the order it
validates and never writes prekey="false".
"""

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import omemo
import omemo.message
import omemo.session
import oldmemo
import oldmemo.etree
import slixmpp
import xeddsa
from omemo.storage import Just, Nothing
from omemo.types import TrustLevel
from oldmemo.oldmemo import NAMESPACE
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

DEVICE_LIST_NODE = NAMESPACE + ".devicelist"
BUNDLE_NODE_PREFIX = NAMESPACE + ".bundles:"
PUBSUB_EVENT = "{http://jabber.org/protocol/pubsub#event}"
NS = "{%s}" % NAMESPACE
LIST_ELEMENT = "list"
OMEMO2 = False          # --omemo 2: main() rebinds the names above
SCE = "{urn:xmpp:sce:1}"


def use_omemo2():
    """Rebinds the protocol constants to OMEMO 2 (twomemo)."""
    global NAMESPACE, DEVICE_LIST_NODE, BUNDLE_NODE_PREFIX, NS, LIST_ELEMENT, OMEMO2
    global twomemo
    import twomemo
    import twomemo.etree  # noqa: F401
    NAMESPACE = twomemo.twomemo.NAMESPACE
    DEVICE_LIST_NODE = NAMESPACE + ":devices"
    BUNDLE_NODE_PREFIX = None      # one node, an item per device
    NS = "{%s}" % NAMESPACE
    LIST_ELEMENT = "devices"
    OMEMO2 = True


BUNDLES2_NODE = "urn:xmpp:omemo:2:bundles"


def backend_etree():
    return twomemo.etree if OMEMO2 else oldmemo.etree


def sce_wrap(body, own, to):
    """The XEP-0420 envelope around body (bytes for python-omemo)."""
    env = ET.Element(SCE + "envelope")
    content = ET.SubElement(env, SCE + "content")
    ET.SubElement(content, "{jabber:client}body").text = body
    ET.SubElement(env, SCE + "rpad").text = os.urandom(8).hex()
    ET.SubElement(env, SCE + "from", {"jid": own})
    ET.SubElement(env, SCE + "to", {"jid": to})
    ET.SubElement(env, SCE + "time", {"stamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return ET.tostring(env, encoding="utf-8")


def sce_unwrap(data, sender, own):
    """The body of a received envelope; ValueError when it breaks the rules."""
    env = ET.fromstring(data.decode("utf-8"))
    if env.tag != SCE + "envelope":
        raise ValueError("not an SCE envelope")
    if env.find(SCE + "rpad") is None:
        raise ValueError("SCE envelope without rpad")
    frm = env.find(SCE + "from")
    if frm is None or frm.get("jid") != sender:
        raise ValueError("SCE from is not the sender")
    to = env.find(SCE + "to")
    if to is not None and to.get("jid") != own:
        raise ValueError("SCE to is not this account")
    content = env.find(SCE + "content")
    body = content.find("{jabber:client}body") if content is not None else None
    return None if body is None else (body.text or "")
IQ_TIMEOUT = 10
STORAGE_FILE = "omemo-storage.json"

log = logging.getLogger("omemo_peer")


CHATSTATES_NS = "http://jabber.org/protocol/chatstates"


def emit(obj):
    """One JSON line on stdout. Only ever called from the event-loop thread."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def fingerprint_of(identity_key_ed25519):
    """Hex of the Curve25519 form (what bundles carry after the 0x05 byte)."""
    return xeddsa.ed25519_pub_to_curve25519_pub(identity_key_ed25519).hex()


def normalize_fingerprint(fp):
    fp = "".join(c for c in str(fp).lower() if c in "0123456789abcdef")
    if len(fp) == 66 and fp.startswith("05"):
        fp = fp[2:]
    return fp


def describe(exc):
    text = str(exc).strip().replace("\n", " ")
    return type(exc).__name__ + (": " + text if text else "")


# --------------------------------------------------------------------- storage

class JsonStorage(omemo.storage.Storage):
    """python-omemo storage as one JSON file, rewritten atomically on change."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        try:
            with open(path) as f:
                self.data = json.load(f)
        except FileNotFoundError:
            self.data = {}

    def _flush(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    async def _load(self, key):
        if key in self.data:
            return Just(self.data[key])
        return Nothing()

    async def _store(self, key, value):
        self.data[key] = value
        self._flush()

    async def _delete(self, key):
        if key in self.data:
            del self.data[key]
            self._flush()


# --------------------------------------------------------------------- session manager

TRUST_NAMES = {
    "trusted": TrustLevel.TRUSTED,
    "blind": TrustLevel.TRUSTED,       # default level of new devices in blind mode
    "distrusted": TrustLevel.DISTRUSTED,
    "undecided": TrustLevel.UNDECIDED,  # default level of new devices in manual mode
}


class PeerSessionManager(omemo.SessionManager):
    """Glue between python-omemo and the slixmpp client in `peer` (a class
    attribute, because SessionManager.create() instantiates with no args)."""

    peer = None

    @property
    def xmpp(self):
        return type(self).peer.xmpp

    def _own_bare(self):
        return self.xmpp.boundjid.bare

    async def _publish(self, node, item_id, payload):
        xmpp = self.xmpp
        form = xmpp["xep_0004"].make_form("submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/pubsub#publish-options")
        form.add_field(var="pubsub#access_model", value="open")
        form.add_field(var="pubsub#persist_items", value="1")
        if node == BUNDLES2_NODE:
            form.add_field(var="pubsub#max_items", value="max")
        try:
            await xmpp["xep_0060"].publish(self._own_bare(), node, id=item_id, payload=payload,
                                           options=form, timeout=IQ_TIMEOUT)
            return
        except IqError as e:
            if e.condition != "conflict" and "precondition-not-met" not in str(e.iq):
                raise
        # The node exists with another access model: reconfigure, publish again.
        cfg = xmpp["xep_0004"].make_form("submit")
        cfg.add_field(var="FORM_TYPE", ftype="hidden",
                      value="http://jabber.org/protocol/pubsub#node_config")
        cfg.add_field(var="pubsub#access_model", value="open")
        if node == BUNDLES2_NODE:
            cfg.add_field(var="pubsub#max_items", value="max")
        await xmpp["xep_0060"].set_node_config(self._own_bare(), node, cfg, timeout=IQ_TIMEOUT)
        await xmpp["xep_0060"].publish(self._own_bare(), node, id=item_id, payload=payload,
                                       options=form, timeout=IQ_TIMEOUT)

    async def _upload_bundle(self, bundle):
        if bundle.namespace != NAMESPACE:
            raise omemo.UnknownNamespace(bundle.namespace)
        try:
            if OMEMO2:
                await self._publish(BUNDLES2_NODE, str(bundle.device_id),
                                    twomemo.etree.serialize_bundle(bundle))
                return
            await self._publish(BUNDLE_NODE_PREFIX + str(bundle.device_id), "current",
                                oldmemo.etree.serialize_bundle(bundle))
        except (IqError, IqTimeout) as e:
            raise omemo.BundleUploadFailed(describe(e)) from e

    async def _download_bundle(self, namespace, bare_jid, device_id):
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        try:
            if OMEMO2:  # one node, the item named by the device id
                iq = await self.xmpp["xep_0060"].get_items(
                    bare_jid, BUNDLES2_NODE, item_ids=[str(device_id)], timeout=IQ_TIMEOUT)
            else:
                # Fetch with max_items, not by item id: Dino publishes id "1".
                iq = await self.xmpp["xep_0060"].get_items(
                    bare_jid, BUNDLE_NODE_PREFIX + str(device_id), max_items=1,
                    timeout=IQ_TIMEOUT)
        except IqError as e:
            if e.condition == "item-not-found":
                raise omemo.BundleNotFound(describe(e)) from e
            raise omemo.BundleDownloadFailed(describe(e)) from e
        except IqTimeout as e:
            raise omemo.BundleDownloadFailed(describe(e)) from e
        for item in iq["pubsub"]["items"]:
            elt = item.xml.find(NS + "bundle")
            if elt is not None:
                try:
                    return backend_etree().parse_bundle(elt, bare_jid, device_id)
                except Exception as e:
                    raise omemo.BundleDownloadFailed("malformed bundle: " + describe(e)) from e
        raise omemo.BundleNotFound("no bundle item for %s/%d" % (bare_jid, device_id))

    async def _delete_bundle(self, namespace, device_id):
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        try:
            if OMEMO2:
                await self.xmpp["xep_0060"].retract(
                    self._own_bare(), BUNDLES2_NODE, str(device_id), notify=False,
                    timeout=IQ_TIMEOUT)
                return
            await self.xmpp["xep_0060"].delete_node(
                self._own_bare(), BUNDLE_NODE_PREFIX + str(device_id), timeout=IQ_TIMEOUT)
        except IqError as e:
            if e.condition != "item-not-found":
                raise omemo.BundleDeletionFailed(describe(e)) from e
        except IqTimeout as e:
            raise omemo.BundleDeletionFailed(describe(e)) from e

    async def _upload_device_list(self, namespace, device_list):
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        try:
            await self._publish(DEVICE_LIST_NODE, "current",
                                backend_etree().serialize_device_list(device_list))
        except (IqError, IqTimeout) as e:
            raise omemo.DeviceListUploadFailed(describe(e)) from e

    async def _download_device_list(self, namespace, bare_jid):
        if namespace != NAMESPACE:
            raise omemo.UnknownNamespace(namespace)
        try:
            iq = await self.xmpp["xep_0060"].get_items(
                bare_jid, DEVICE_LIST_NODE, max_items=1, timeout=IQ_TIMEOUT)
        except IqError as e:
            if e.condition == "item-not-found":
                return {}
            raise omemo.DeviceListDownloadFailed(describe(e)) from e
        except IqTimeout as e:
            raise omemo.DeviceListDownloadFailed(describe(e)) from e
        for item in iq["pubsub"]["items"]:
            elt = item.xml.find(NS + LIST_ELEMENT)
            if elt is not None:
                if len(elt) == 0:
                    return {}  # the schemas reject an empty list
                try:
                    return backend_etree().parse_device_list(elt)
                except Exception as e:
                    raise omemo.DeviceListDownloadFailed("malformed device list: " + describe(e)) from e
        return {}

    async def _evaluate_custom_trust_level(self, device):
        if fingerprint_of(device.identity_key) in type(self).peer.pretrusted:
            return TrustLevel.TRUSTED
        try:
            return TRUST_NAMES[device.trust_level_name]
        except KeyError:
            raise omemo.UnknownTrustLevel(device.trust_level_name)

    async def _make_trust_decision(self, undecided, identifier):
        # Never decides: in blind mode new devices start as "blind" (trusted),
        # so only an explicit "undecided" set by a trust command lands here;
        # in manual mode every device not trusted by command does. Either
        # way encrypt() then raises StillUndecided, reported as an error.
        return None

    async def _send_message(self, message, bare_jid):
        # Automated, body-less messages (key transport / session completion).
        try:
            type(self).peer.send_omemo_stanza(message, bare_jid, body=None)
        except Exception as e:
            raise omemo.MessageSendingFailed(describe(e)) from e


# --------------------------------------------------------------------- XMPP client

class PinnedClient(slixmpp.ClientXMPP):
    """ClientXMPP that never resolves DNS: it connects to self.pinned only."""

    pinned = None

    async def _pick_dns_answer(self, domain, port=None):
        return None

    def connect_pinned(self):
        self.address = self.pinned
        return self.connect(address=self.pinned, use_ssl=False,
                            force_starttls=False, disable_starttls=True)


class Peer:
    def reply(self, obj):
        """emit() for a command's answer: echoes the command's "req" tag."""
        if self.current_req is not None:
            obj["req"] = self.current_req
        emit(obj)

    def __init__(self, args):
        self.current_req = None
        self.args = args
        self.trust_mode = args.trust
        self.jid = args.jid
        self.quitting = False
        self.ready = False
        self.session_manager = None
        self.omemo_lock = asyncio.Lock()
        self.incoming = asyncio.Queue()
        self.commands = asyncio.Queue()
        self.done = asyncio.get_running_loop().create_future()
        self.reconnect_delay = 0.2
        self.connect_deadline = time.monotonic() + args.connect_timeout
        os.makedirs(args.state, exist_ok=True)
        self.storage = JsonStorage(os.path.join(args.state, STORAGE_FILE))
        self.pretrusted = set(self.storage.data.get("/peer/pretrusted", []))

        xmpp = PinnedClient(args.jid, args.password)
        xmpp.pinned = (args.host, args.port)
        xmpp.register_plugin("xep_0030")
        xmpp.register_plugin("xep_0004")
        xmpp.register_plugin("xep_0060")
        xmpp.register_plugin("xep_0199")  # answer pings
        xmpp.register_plugin("xep_0115")
        xmpp["xep_0030"].add_feature(DEVICE_LIST_NODE + "+notify")
        xmpp.add_event_handler("session_start", self.on_session_start)
        xmpp.add_event_handler("disconnected", self.on_disconnected)
        xmpp.add_event_handler("connection_failed", self.on_connection_failed)
        xmpp.add_event_handler("failed_auth", self.on_failed_auth)
        xmpp.register_handler(Callback("moonwire-peer-all-messages", StanzaPath("message"),
                                       self.on_raw_message))
        for t in ("result", "error"):
            xmpp.register_handler(Callback("moonwire-peer-iq-" + t, StanzaPath("iq@type=" + t),
                                           self.on_raw_iq))
        xmpp.register_handler(Callback("moonwire-peer-presence", StanzaPath("presence"),
                                       self.on_raw_presence))
        self.xmpp = xmpp
        PeerSessionManager.peer = self

    # ---- connection management

    def start(self):
        self.xmpp.connect_pinned()

    def fatal(self, reason):
        if not self.done.done():
            emit({"event": "fatal", "reason": reason})
            self.done.set_result(2)

    def on_failed_auth(self, *_):
        self.quitting = True
        self.fatal("authentication failed for %s" % self.jid)

    def on_connection_failed(self, err):
        # Replace slixmpp's slow back-off (1, 3, 7 ... 300 s) with a short one.
        self.xmpp.cancel_connection_attempt()
        self._schedule_reconnect("connection failed: %s" % err)

    def on_disconnected(self, reason):
        if self.quitting:
            return
        if self.ready:
            emit({"event": "disconnected", "reason": str(reason) if reason else None})
        self._schedule_reconnect("disconnected: %s" % reason)

    def _schedule_reconnect(self, why):
        if self.quitting or self.done.done():
            return
        if not self.ready and time.monotonic() > self.connect_deadline:
            self.fatal("could not connect to %s:%d within %.0fs (%s)"
                       % (self.args.host, self.args.port, self.args.connect_timeout, why))
            return
        delay = self.reconnect_delay
        self.reconnect_delay = min(2.0, self.reconnect_delay * 1.6)
        log.info("reconnecting in %.1fs (%s)", delay, why)
        asyncio.get_running_loop().call_later(delay, self._reconnect)

    def _reconnect(self):
        if not self.quitting and not self.done.done() and self.xmpp.transport is None:
            self.xmpp.connect_pinned()

    async def on_session_start(self, _event):
        self.reconnect_delay = 0.2
        try:
            if self.session_manager is None:
                sm = await PeerSessionManager.create(
                    [twomemo.Twomemo(self.storage) if OMEMO2 else oldmemo.Oldmemo(self.storage)],
                    self.storage,
                    self.xmpp.boundjid.bare,
                    initial_own_label=None,
                    undecided_trust_level_name="blind" if self.trust_mode == "blind" else "undecided",
                )
                # Republish bundle / re-add ourselves if the server lost them.
                await sm.ensure_data_consistency()
                await sm.after_history_sync()
                self.session_manager = sm
                asyncio.ensure_future(self.incoming_loop())
            # Initial presence: triggers delivery of offline messages.
            self.xmpp.send_presence()
        except Exception as e:
            log.exception("session start failed")
            self.fatal("OMEMO setup failed: " + describe(e))
            return
        if not self.ready:
            own, _ = await self.session_manager.get_own_device_information()
            self.ready = True
            emit({"event": "ready", "jid": self.xmpp.boundjid.bare, "full_jid": str(self.xmpp.boundjid),
                  "device_id": own.device_id, "fingerprint": fingerprint_of(own.identity_key)})
            asyncio.ensure_future(self.command_loop())
        else:
            emit({"event": "reconnected"})

    # ---- incoming stanzas

    def on_raw_message(self, stanza):
        self.incoming.put_nowait(stanza)

    def on_raw_iq(self, stanza):
        # only answers to send_raw IQs: slixmpp's own IQs have other ids
        if not (stanza["id"] or "").startswith("raw-"):
            return
        cond = None
        if stanza["type"] == "error":
            cond = stanza["error"]["condition"] or None
        emit({"event": "iq", "from": str(stanza["from"]), "id": stanza["id"],
              "type": stanza["type"], "condition": cond})

    def on_raw_presence(self, stanza):
        emit({"event": "presence", "from": str(stanza["from"]), "type": stanza["type"]})

    async def incoming_loop(self):
        while True:
            stanza = await self.incoming.get()
            try:
                async with self.omemo_lock:
                    await self.handle_message(stanza)
            except Exception as e:  # never let one stanza kill the loop
                log.exception("message handling failed")
                emit({"event": "decrypt_error", "from": stanza["from"].bare, "device_id": None,
                      "id": stanza["id"] or None, "reason": "internal: " + describe(e)})

    async def handle_message(self, stanza):
        sm = self.session_manager
        sender = stanza["from"].bare or self.xmpp.boundjid.host
        mtype = stanza["type"]
        sid = stanza["id"] or None
        delayed = stanza.xml.find("{urn:xmpp:delay}delay") is not None

        if mtype == "error":
            cond = stanza["error"]["condition"] if stanza.xml.find("{jabber:client}error") is not None else None
            emit({"event": "message_error", "from": str(stanza["from"]), "id": sid, "condition": cond})
            return

        event = stanza.xml.find(PUBSUB_EVENT + "event")
        if event is not None:
            for items in event.findall(PUBSUB_EVENT + "items"):
                if items.get("node") != DEVICE_LIST_NODE:
                    continue
                for item in items.findall(PUBSUB_EVENT + "item"):
                    lst = item.find(NS + LIST_ELEMENT)
                    if lst is None or len(lst) == 0:
                        continue
                    try:
                        await sm.update_device_list(NAMESPACE, sender,
                                                    backend_etree().parse_device_list(lst))
                    except Exception as e:
                        log.warning("bad device list push from %s: %s", sender, describe(e))
            return

        # a chat state may ride on an encrypted message (a moonwire result
        # carries <active/>): reported for every stanza, before its message
        for child in stanza.xml:
            if child.tag.startswith("{%s}" % CHATSTATES_NS):
                emit({"event": "chat_state", "from": sender, "id": sid, "type": mtype,
                      "state": child.tag.split("}", 1)[1],
                      "body": stanza.xml.find("{jabber:client}body") is not None,
                      "no_store": stanza.xml.find("{urn:xmpp:hints}no-store") is not None})

        enc = stanza.xml.find(NS + "encrypted")
        if enc is not None:
            header = enc.find(NS + "header")
            try:
                dev = int(header.get("sid")) if header is not None else None
            except (TypeError, ValueError):
                dev = None
            try:
                if OMEMO2:
                    message = twomemo.etree.parse_message(enc, sender)
                else:
                    message = await oldmemo.etree.parse_message(enc, sender,
                                                                self.xmpp.boundjid.bare, sm)
                plaintext, device, _ = await sm.decrypt(message)
                if OMEMO2 and plaintext is not None:
                    body = sce_unwrap(plaintext, sender, self.xmpp.boundjid.bare)
                    plaintext = None if body is None else body.encode("utf-8")
            except Exception as e:
                emit({"event": "decrypt_error", "from": sender, "device_id": dev, "id": sid,
                      "reason": describe(e)})
                return
            if plaintext is None:
                ev = {"event": "key_transport", "from": sender, "device_id": device.device_id,
                      "id": sid}
                if OMEMO2:
                    ev["kex"] = await self.kex_for_me(enc)
                emit(ev)
                return
            trust = await sm._evaluate_custom_trust_level(device)
            ev = {"event": "message", "from": sender, "device_id": device.device_id,
                  "body": plaintext.decode("utf-8", "replace"), "encrypted": True,
                  "id": sid, "type": mtype, "trust": trust.name.lower(), "delayed": delayed}
            if OMEMO2:
                ev["kex"] = await self.kex_for_me(enc)
            emit(ev)
            return

        body = stanza.xml.find("{jabber:client}body")
        if body is not None:
            emit({"event": "message", "from": sender, "device_id": None,
                  "body": body.text or "", "encrypted": False, "id": sid, "type": mtype,
                  "delayed": delayed})

    async def kex_for_me(self, enc):
        """OMEMO 2: whether the <key> for this device was a key exchange
        (kex="true"), the sign of a first contact or of a session the
        sender does not yet know confirmed."""
        own, _ = await self.session_manager.get_own_device_information()
        me = self.xmpp.boundjid.bare
        for keys in enc.iter(NS + "keys"):
            if keys.get("jid") != me:
                continue
            for key in keys.findall(NS + "key"):
                if key.get("rid") == str(own.device_id):
                    return key.get("kex") in ("true", "1")
        return None

    # ---- outgoing

    def send_omemo_stanza(self, message, bare_jid, body, stanza_id=None):
        msg = self.xmpp.make_message(mto=bare_jid, mtype="chat")
        msg["id"] = stanza_id or uuid.uuid4().hex
        msg.xml.append(backend_etree().serialize_message(message))
        if body is not None:
            msg.xml.append(ET.Element("{urn:xmpp:eme:0}encryption",
                                      {"name": "OMEMO", "namespace": NAMESPACE}))
            msg["body"] = body
        msg.xml.append(ET.Element("{urn:xmpp:hints}store"))
        msg.send()
        return msg["id"]

    async def cmd_send(self, cmd):
        to = slixmpp.JID(cmd["to"]).bare
        body = cmd["body"]
        sm = self.session_manager
        await sm.refresh_device_list(NAMESPACE, to)
        plain = (sce_wrap(body, self.xmpp.boundjid.bare, to) if OMEMO2
                 else body.encode("utf-8"))
        messages, errors = await sm.encrypt(frozenset([to]), {NAMESPACE: plain})
        message = next(m for m in messages if m.namespace == NAMESPACE)
        stanza_id = self.send_omemo_stanza(
            message, to, body="[This message is OMEMO encrypted]", stanza_id=cmd.get("id"))
        recipients = sorted(
            ({"jid": key.bare_jid, "device_id": key.device_id, "prekey": kex is not None}
             for key, kex in message.keys), key=lambda r: (r["jid"], r["device_id"]))
        out = {"event": "sent", "to": to, "id": stanza_id, "recipients": recipients}
        if errors:
            out["warnings"] = sorted(describe(e) for e in errors)
        self.reply(out)

    async def cmd_trust(self, cmd):
        jid = slixmpp.JID(cmd["jid"]).bare
        fp = normalize_fingerprint(cmd["fingerprint"])
        level = cmd.get("level", "trusted")
        if level not in ("trusted", "distrusted", "undecided"):
            raise ValueError("unknown trust level %r" % level)
        if len(fp) != 64:
            raise ValueError("fingerprint must be 32 bytes of hex")
        sm = self.session_manager
        try:
            await sm.refresh_device_list(NAMESPACE, jid)
        except omemo.DeviceListDownloadFailed as e:
            log.warning("device list refresh for %s failed: %s", jid, e)
        ids = []
        for device in await sm.get_device_information(jid):
            if fingerprint_of(device.identity_key) == fp:
                await sm.set_trust(jid, device.identity_key, level)
                ids.append(device.device_id)
        # Remember trusted fingerprints not seen yet (trust before first contact).
        if level == "trusted":
            self.pretrusted.add(fp)
        else:
            self.pretrusted.discard(fp)
        await self.storage.store("/peer/pretrusted", sorted(self.pretrusted))
        self.reply({"event": "trusted", "jid": jid, "fingerprint": fp, "level": level,
              "device_ids": sorted(ids)})

    async def cmd_devices(self, cmd):
        jid = slixmpp.JID(cmd["jid"]).bare
        sm = self.session_manager
        try:
            await sm.refresh_device_list(NAMESPACE, jid)
        except omemo.DeviceListDownloadFailed as e:
            log.warning("device list refresh for %s failed: %s", jid, e)
        devices = []
        for device in await sm.get_device_information(jid):
            if jid == self.xmpp.boundjid.bare and device.device_id == (await sm.get_own_device_information())[0].device_id:
                continue
            level = await sm._evaluate_custom_trust_level(device)
            devices.append({"device_id": device.device_id,
                            "fingerprint": fingerprint_of(device.identity_key),
                            "trust": level.name.lower(),
                            "active": dict(device.active).get(NAMESPACE, False)})
        self.reply({"event": "devices", "jid": jid,
              "devices": sorted(devices, key=lambda d: d["device_id"])})

    async def cmd_bundle(self, cmd):
        jid = slixmpp.JID(cmd["jid"]).bare
        dev = int(cmd["device_id"])
        iq = await self.xmpp["xep_0060"].get_items(
            jid, BUNDLE_NODE_PREFIX + str(dev), max_items=1, timeout=IQ_TIMEOUT)
        items = list(iq["pubsub"]["items"])
        if len(items) != 1:
            raise ValueError("expected one bundle item, got %d" % len(items))
        b = items[0].xml.find(NS + "bundle")
        if b is None:
            raise ValueError("bundle item without <bundle>")
        spk = b.find(NS + "signedPreKeyPublic")
        prekeys = b.find(NS + "prekeys")
        ids = [int(k.get("preKeyId")) for k in prekeys.findall(NS + "preKeyPublic")]
        self.reply({"event": "bundle", "jid": jid, "device_id": dev,
                    "item_id": items[0]["id"], "prekey_ids": ids,
                    "signed_prekey_id": int(spk.get("signedPreKeyId")),
                    "identity_key": (b.findtext(NS + "identityKey") or "").strip()})

    async def cmd_send_empty(self, cmd):
        """An empty OMEMO message (<keys>, no <payload>) to every device of
        `to` with a session, built the way python-omemo builds its own
        session-completion / heartbeat messages (SessionManager's private
        __send_empty_message: backend.encrypt_empty, encrypt_key_material),
        but on demand.  With "build": true a missing session is built
        first (encrypt() builds it; its message is thrown away), so the
        empty message is a first contact carrying the key exchange, as a
        key-transport message may be."""
        to = slixmpp.JID(cmd["to"]).bare
        sm = self.session_manager
        if cmd.get("build"):
            await sm.refresh_device_list(NAMESPACE, to)
            plain = (sce_wrap("", self.xmpp.boundjid.bare, to) if OMEMO2 else b" ")
            await sm.encrypt(frozenset([to]), {NAMESPACE: plain})
        backend = next(b for b in sm._SessionManager__backends if b.namespace == NAMESPACE)
        sent = []
        for info in sorted(await sm.get_device_information(to), key=lambda d: d.device_id):
            session = await backend.load_session(to, info.device_id)
            if session is None:
                continue
            content, plain_key_material = await backend.encrypt_empty()
            ekm = await backend.encrypt_key_material(session, plain_key_material)
            kex = (session.key_exchange if session.initiation is omemo.session.Initiation.ACTIVE
                   and not session.confirmed else None)
            message = omemo.message.Message(NAMESPACE, self.xmpp.boundjid.bare,
                                            (await sm.get_own_device_information())[0].device_id,
                                            content, frozenset({(ekm, kex)}))
            self.send_omemo_stanza(message, to, body=None, stanza_id=cmd.get("id"))
            await backend.store_session(session)
            sent.append({"device_id": info.device_id, "kex": kex is not None})
        if not sent:
            raise ValueError("no session with %s" % to)
        self.reply({"event": "sent_empty", "to": to, "recipients": sent})

    async def cmd_send_plain(self, cmd):
        msg = self.xmpp.make_message(mto=cmd["to"], mbody=cmd["body"], mtype=cmd.get("type", "chat"))
        msg["id"] = cmd.get("id") or uuid.uuid4().hex
        msg.send()
        self.reply({"event": "sent_plain", "to": cmd["to"], "id": msg["id"]})

    async def cmd_send_raw(self, cmd):
        self.xmpp.send_raw(cmd["xml"])
        self.reply({"event": "sent_raw"})

    async def command_loop(self):
        handlers = {"send": self.cmd_send, "trust": self.cmd_trust, "devices": self.cmd_devices,
                    "bundle": self.cmd_bundle, "send_empty": self.cmd_send_empty,
                    "send_plain": self.cmd_send_plain, "send_raw": self.cmd_send_raw}
        while True:
            line = await self.commands.get()
            if line is None:
                await self.quit()
                return
            self.current_req = None
            try:
                cmd = json.loads(line)
                name = cmd["cmd"]
                self.current_req = cmd.get("req")
            except Exception as e:
                self.reply({"event": "error", "cmd": None, "reason": "bad command line: " + describe(e)})
                continue
            if name == "quit":
                await self.quit()
                return
            if name == "ping":
                self.reply({"event": "pong", "token": cmd.get("token")})
                continue
            handler = handlers.get(name)
            if handler is None:
                self.reply({"event": "error", "cmd": name, "reason": "unknown command"})
                continue
            try:
                async with self.omemo_lock:
                    await handler(cmd)
            except Exception as e:
                log.info("command %s failed", name, exc_info=True)
                self.reply({"event": "error", "cmd": name, "reason": describe(e)})

    def on_stdin_eof(self):
        if self.ready:
            self.commands.put_nowait(None)  # after the queued commands
        else:
            asyncio.ensure_future(self.quit())

    async def quit(self):
        self.quitting = True
        try:
            if self.xmpp.transport is not None:
                await asyncio.wait_for(self.xmpp.disconnect(wait=1.0), 3)
        except Exception:
            pass
        emit({"event": "bye"})
        if not self.done.done():
            self.done.set_result(0)


def stdin_reader(loop, peer):
    """Feeds stdin lines to the command queue; EOF (parent gone) means quit."""
    for line in sys.stdin:
        line = line.strip()
        if line:
            loop.call_soon_threadsafe(peer.commands.put_nowait, line)
    loop.call_soon_threadsafe(peer.on_stdin_eof)


async def amain(args):
    peer = Peer(args)
    loop = asyncio.get_running_loop()
    threading.Thread(target=stdin_reader, args=(loop, peer), daemon=True).start()
    peer.start()

    # A peer that never becomes ready must not hang its test.
    def startup_watchdog():
        if not peer.ready:
            peer.fatal("not ready within %.0fs" % (args.connect_timeout + 15))
    loop.call_later(args.connect_timeout + 15, startup_watchdog)
    return await peer.done


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--state", required=True, help="directory for the OMEMO storage JSON")
    p.add_argument("--trust", choices=("blind", "manual"), default="blind")
    p.add_argument("--omemo", choices=("legacy", "2"), default="legacy",
                   help="legacy OMEMO (oldmemo) or OMEMO 2 (twomemo)")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    p.add_argument("--debug", action="store_true", help="debug logging on stderr")
    args = p.parse_args(argv)
    if args.omemo == "2":
        use_omemo2()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        sys.stdin.reconfigure(encoding="utf-8", errors="replace")
        sys.stdout.reconfigure(encoding="utf-8")
    except AttributeError:
        pass
    code = asyncio.run(amain(args))
    # Daemon threads (stdin reader) must not keep the process alive.
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
