'use strict';
// Simulated Etherpad editors, one process for all of them.
//
// Each editor behaves like Etherpad 1.8.x's browser client (pad.js, collab_client.js): one
// socket.io 2 session (polling handshake, then websocket upgrade) with pad.js's reconnection
// settings, CLIENT_READY, one USER_CHANGES in flight at a time, ACCEPT_COMMIT and
// NEW_CHANGES; after a reconnect CLIENT_READY {reconnect: true, client_rev}, the missed
// revisions as CLIENT_RECONNECT (its own revision there counts as accepted), then the changes
// not yet accepted are sent again. Changesets are Etherpad's own Changeset.js (the copy
// etherpad-cli-client ships).
//
// Config: one JSON argument {url, editors: [{id, pad, local_address?}], interval_ms, tag}.
// An editor with a local_address connects from it (users come from addresses of their own,
// and Etherpad rate-limits per address; on loopback every 127/8 address is this machine).
// Output: one JSON event per line on stdout {t, ed, ev, ...}; t is ms since start.
// Stops on SIGTERM, SIGINT or when stdin closes, after a last "stopped" event per editor.

const http = require('http');
const https = require('https');
const io = require('socket.io-client');
const Changeset = require('etherpad-cli-client/lib/Changeset');
const AttributePool = require('etherpad-cli-client/lib/AttributePool');

const config = JSON.parse(process.argv[2]);
const started = Date.now();
const base = new URL(config.url);
const prefix = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;

const emit = (ed, ev, fields = {}) => {
  process.stdout.write(`${JSON.stringify({t: Date.now() - started, ed, ev, ...fields})}\n`);
};

const randomString = (len) => {
  const chars = '0123456789abcdefghijklmnopqrstuvwxyz';
  let out = '';
  for (let i = 0; i < len; i++) out += chars[Math.floor(Math.random() * chars.length)];
  return out;
};

// The browser loads the pad page before it opens the socket, and keeps the cookies it got
// (an ALB's AWSALB stickiness cookie among them).
const fetchCookies = (pad, agent) => new Promise((resolve) => {
  const client = base.protocol === 'https:' ? https : http;
  const url = new URL(`${prefix}p/${encodeURIComponent(pad)}`, base);
  const req = client.get(url, agent ? {agent} : {}, (res) => {
    res.resume();
    const cookies = (res.headers['set-cookie'] || []).map((c) => c.split(';')[0]);
    resolve(cookies.join('; '));
  });
  req.setTimeout(5000, () => req.destroy());
  req.on('error', () => resolve(''));
});

class Editor {
  constructor(id, pad, localAddress) {
    this.id = id;
    this.pad = pad;
    const Agent = base.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = localAddress ? new Agent({localAddress, keepAlive: true}) : null;
    this.token = `t.${randomString(20)}`;
    this.seq = 0;
    this.atext = null;
    this.apool = new AttributePool();
    this.rev = null;
    this.userId = null;
    this.inFlight = null; // {changeset, marks}
    this.outgoing = null;
    this.ready = false;   // can edit: pad loaded and no revisions pending
    this.gone = false;
    this.everConnected = false;
  }

  async start() {
    emit(this.id, 'connecting', {pad: this.pad});
    const cookie = await fetchCookies(this.pad, this.agent);
    this.socket = io(base.origin, {
      agent: this.agent || false,
      path: `${prefix}socket.io`,
      query: {padId: this.pad},
      reconnectionAttempts: 5,
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
      forceNew: true,
      transports: ['polling', 'websocket'],
      extraHeaders: cookie ? {Cookie: cookie} : {},
    });
    const s = this.socket;
    s.once('connect', () => { this.session(); this.sendClientReady(false); });
    s.on('reconnect', () => { this.session(); this.sendClientReady(this.atext != null); });
    s.on('disconnect', (reason) => {
      this.notReady();
      emit(this.id, 'disconnect', {reason});
      if (reason === 'io server disconnect' && !this.gone) s.connect();
    });
    s.on('reconnect_attempt', async (n) => {
      emit(this.id, 'reconnect_attempt', {n});
      // A new handshake carries the cookies a page reload would (a dead target's stickiness
      // cookie is replaced by the load balancer's next answer).
      const fresh = await fetchCookies(this.pad, this.agent);
      s.io.opts.extraHeaders = fresh ? {Cookie: fresh} : {};
    });
    s.on('connect_error', (e) => emit(this.id, 'connect_error', {error: String(e && e.message || e)}));
    s.on('reconnect_failed', () => this.giveUp('reconnect_failed'));
    s.on('message', (msg) => {
      try { this.onMessage(msg); } catch (e) { emit(this.id, 'error', {error: String(e.stack || e)}); }
    });
  }

  session() {
    this.everConnected = true;
    const transport = this.socket.io.engine && this.socket.io.engine.transport;
    emit(this.id, 'session', {transport: transport && transport.name});
    this.socket.io.engine.once('upgrade', (t) => emit(this.id, 'upgrade', {transport: t.name}));
  }

  sendClientReady(isReconnect) {
    const msg = {component: 'pad', type: 'CLIENT_READY', padId: this.pad,
      sessionID: null, token: this.token, protocolVersion: 2};
    if (isReconnect) {
      msg.client_rev = this.rev;
      msg.reconnect = true;
    }
    emit(this.id, 'client_ready', {reconnect: !!isReconnect, client_rev: isReconnect ? this.rev : null});
    this.socket.json.send(msg);
  }

  notReady() {
    if (this.ready) emit(this.id, 'not_ready');
    this.ready = false;
  }

  becomeReady(how) {
    this.ready = true;
    emit(this.id, 'ready', {rev: this.rev, how});
    // pad.js: after a reconnect the change that was in flight is no longer "committing";
    // it goes out again with whatever was typed since.
    if (this.inFlight) {
      this.outgoing = this.outgoing ? {
        changeset: Changeset.compose(this.inFlight.changeset, this.outgoing.changeset, this.apool),
        marks: this.inFlight.marks.concat(this.outgoing.marks)} : this.inFlight;
      this.inFlight = null;
    }
    this.flush();
  }

  giveUp(reason) {
    if (this.gone) return;
    this.notReady();
    this.gone = true;
    emit(this.id, 'gave_up', {reason});
    this.socket.close();
  }

  onMessage(msg) {
    if (msg.disconnect) {        // pad.js shows the "disconnected" modal: the user must reload
      this.giveUp(`server:${msg.disconnect}`);
      return;
    }
    if (msg.accessStatus) {
      this.giveUp(`access:${msg.accessStatus}`);
      return;
    }
    if (msg.type === 'CLIENT_VARS') {
      const vars = msg.data.collab_client_vars;
      this.atext = vars.initialAttributedText;
      this.apool = new AttributePool().fromJsonable(vars.apool);
      this.rev = vars.rev;
      this.userId = msg.data.userId;
      this.inFlight = null;      // a fresh load: nothing of ours is pending any more
      this.outgoing = null;
      this.becomeReady('client_vars');
      return;
    }
    if (msg.type !== 'COLLABROOM' || !msg.data) return;
    const data = msg.data;
    if (data.type === 'ACCEPT_COMMIT') {
      if (data.newRev <= this.rev) return;
      if (data.newRev !== this.rev + 1 || !this.inFlight) {
        emit(this.id, 'bad_revision', {type: data.type, newRev: data.newRev, rev: this.rev});
        return;
      }
      this.rev = data.newRev;
      this.accept('accept_commit');
      this.flush();
    } else if (data.type === 'NEW_CHANGES') {
      if (data.newRev <= this.rev) return;
      if (data.newRev !== this.rev + 1) {
        emit(this.id, 'bad_revision', {type: data.type, newRev: data.newRev, rev: this.rev});
        return;
      }
      this.applyServerChange(data.changeset, data.apool);
      this.rev = data.newRev;
    } else if (data.type === 'CLIENT_RECONNECT') {
      if (data.noChanges) {
        this.becomeReady('reconnect');
        return;
      }
      if (data.newRev !== this.rev + 1) {
        emit(this.id, 'bad_revision', {type: data.type, newRev: data.newRev, rev: this.rev});
        return;
      }
      this.rev = data.newRev;
      if (data.author === this.userId && this.inFlight) this.accept('client_reconnect');
      else this.applyServerChange(data.changeset, data.apool);
      if (data.newRev === data.headRev) this.becomeReady('reconnect');
    }
  }

  accept(via) {
    emit(this.id, 'ack', {rev: this.rev, marks: this.inFlight.marks, via});
    this.atext = Changeset.applyToAText(this.inFlight.changeset, this.atext, this.apool);
    this.inFlight = null;
  }

  // Others' edits: the base text takes the server's change; what is in flight and what
  // waits are rebased over it (collab_client's transform).
  applyServerChange(changeset, wirePool) {
    let server = Changeset.moveOpsToNewPool(
        changeset, new AttributePool().fromJsonable(wirePool), this.apool);
    this.atext = Changeset.applyToAText(server, this.atext, this.apool);
    for (const pending of [this.inFlight, this.outgoing]) {
      if (!pending) continue;
      const rebased = Changeset.follow(server, pending.changeset, false, this.apool);
      server = Changeset.follow(pending.changeset, server, true, this.apool);
      pending.changeset = rebased;
    }
  }

  type() {
    if (this.gone || this.atext == null) return;
    this.seq += 1;
    const mark = `[${config.tag}${this.id}n${this.seq}]`;
    const view = this.view();
    // Typed at the end of the text, before the pad's final newline.
    const cs = Changeset.makeSplice(view.text, view.text.length - 1, 0, mark);
    this.outgoing = this.outgoing ? {
      changeset: Changeset.compose(this.outgoing.changeset, cs, this.apool),
      marks: this.outgoing.marks.concat([mark])} : {changeset: cs, marks: [mark]};
    emit(this.id, 'typed', {mark});
    this.flush();
  }

  view() {
    let text = this.atext;
    for (const pending of [this.inFlight, this.outgoing]) {
      if (pending) text = Changeset.applyToAText(pending.changeset, text, this.apool);
    }
    return text;
  }

  flush() {
    if (!this.ready || this.inFlight || !this.outgoing || this.gone) return;
    this.inFlight = this.outgoing;
    this.outgoing = null;
    emit(this.id, 'sent', {base_rev: this.rev, marks: this.inFlight.marks});
    this.socket.json.send({type: 'COLLABROOM', component: 'pad', data: {
      type: 'USER_CHANGES', baseRev: this.rev, changeset: this.inFlight.changeset,
      apool: new AttributePool().toJsonable()}});
  }

  stop() {
    const pending = [].concat(this.inFlight ? this.inFlight.marks : [],
        this.outgoing ? this.outgoing.marks : []);
    emit(this.id, 'stopped', {unsent: pending, ready: this.ready, gone: this.gone});
    this.gone = true;
    if (this.socket) this.socket.close();
  }
}

const editors = config.editors.map((e) => new Editor(e.id, e.pad, e.local_address));
const timers = [];
editors.forEach((editor, i) => {
  editor.start().catch((e) => emit(editor.id, 'error', {error: String(e.stack || e)}));
  // Editors type at the same rate, out of phase, so the server sees a steady stream.
  const offset = Math.floor((config.interval_ms * i) / editors.length);
  timers.push(setTimeout(() => {
    timers.push(setInterval(() => editor.type(), config.interval_ms));
  }, offset));
});
emit(null, 'started', {editors: editors.length});

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  timers.forEach((t) => { clearTimeout(t); clearInterval(t); });
  editors.forEach((e) => e.stop());
  emit(null, 'exit');
  process.stdout.write('', () => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('data', (chunk) => { if (String(chunk).includes('stop')) stop(); });
process.stdin.resume();
