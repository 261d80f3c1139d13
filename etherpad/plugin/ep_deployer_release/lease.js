'use strict';
// One pad server per environment: the pad lease.
//
// Etherpad does not cluster. Each instance keeps the pads it has loaded in memory, so two
// instances serving one pad diverge and overwrite each other's revisions in the shared
// database; and socket.io 2 keeps a session's state in one process, so the second request of
// a session that a round-robin balancer sends to the other instance is refused ("Session ID
// unknown"). So exactly one instance serves pads — the holder of the lease — and every other
// one serves page loads and static files itself but forwards everything that touches a pad
// (socket.io, polling and websocket; the HTTP API; /p/<pad>/... export, import, timeslider)
// to the holder.
//
// The lease is a PostgreSQL session-level advisory lock, held on a connection of its own:
// a process that dies, even by kill -9, loses its connection and with it the lease at once.
// The holder writes its reachable address into deployer_pad_lease; a reader believes that
// row only while pg_locks shows the row's backend holding the lock, so a dead holder's row
// is never followed. Instances without the lease try again every 250 ms.
//
// Handover (SIGTERM: stop-etherpad.sh, CodeDeploy ApplicationStop, instance termination):
// the holder stops taking pad sessions, disconnects its pad sockets (Etherpad's clients
// reconnect and resend what was not accepted), flushes Etherpad's database write buffer,
// and only then unlocks; the next instance takes the lease and loads pads fresh from the
// database. Etherpad closes its database in a shutdown hook that runs beside this one, so
// that close is held back until the drain is done.
//
// Environment:
//   ETHERPAD_PAD_LEASE          off: no lease, no forwarding (two plain Etherpads)   on
//                               (on only has an effect with dbType postgres)
//   ETHERPAD_PAD_LEASE_ADDRESS  host:port where the other instances reach this one
//                               (default: the listen address, or the first non-loopback
//                               IPv4 address when Etherpad listens on every interface)
//   ETHERPAD_PAD_LEASE_WAIT_S   how long a pad request waits for a holder            15

const http = require('http');
const net = require('net');
const os = require('os');
const path = require('path');
const util = require('util');

const LOCK_KEYS = [0x45504144, 1]; // "EPAD", 1: one lock per database, i.e. per environment
const TABLE = 'deployer_pad_lease';
const TRY_EVERY_MS = 250;
const QUERY_TIMEOUT_MS = 2000;
const DRAIN_SETTLE_MS = 100;
const SERVER_HEADER = 'X-Etherpad-Pad-Server';
const FORWARDED_HEADER = 'X-Etherpad-Pad-Forwarded-By';
const LEASE_HEADER = 'X-Etherpad-Pad-Lease';
const STATUS_PATH = '/deployer/pad-lease';

const log = (message) => console.log(`ep_deployer_release: pad lease: ${message}`);

// -- what touches a pad -------------------------------------------------------------------

// Page loads (/, /p/<pad>) and static files are any instance's; what reads or changes a
// pad's content is the holder's alone.
const isPadRequest = (url) => {
  const pathname = (url || '/').split('?')[0];
  return pathname === '/socket.io' || pathname.startsWith('/socket.io/') ||
      pathname.startsWith('/api/') || /^\/p\/[^/]+\/./.test(pathname);
};

// -- configuration ------------------------------------------------------------------------

const requireFromEtherpad = (name) => {
  const db = require.resolve('ep_etherpad-lite/node/db/DB');
  const ueberdb = require.resolve('ueberdb2', {paths: [path.dirname(db)]});
  return require(require.resolve(name, {paths: [path.dirname(ueberdb)]}));
};

const advertisedAddress = (settings) => {
  const given = (process.env.ETHERPAD_PAD_LEASE_ADDRESS || '').trim();
  if (given) return given;
  const port = settings.port;
  let host = settings.ip;
  if (!host || host === '0.0.0.0' || host === '::') {
    host = '127.0.0.1';
    for (const addresses of Object.values(os.networkInterfaces())) {
      const found = (addresses || []).find((a) => a.family === 'IPv4' && !a.internal);
      if (found) { host = found.address; break; }
    }
  }
  return `${host}:${port}`;
};

const waitSeconds = () => {
  const value = Number(process.env.ETHERPAD_PAD_LEASE_WAIT_S || 15);
  return Number.isFinite(value) && value >= 0 ? value : 15;
};

const wanted = (settings) => {
  const flag = (process.env.ETHERPAD_PAD_LEASE || 'on').trim().toLowerCase();
  if (['off', '0', 'false', 'no'].includes(flag)) return {on: false, why: 'ETHERPAD_PAD_LEASE=off'};
  if (settings.dbType !== 'postgres') {
    return {on: false, why: `database ${settings.dbType} (the lease needs postgres)`};
  }
  return {on: true};
};

// -- the lease ----------------------------------------------------------------------------

class PadLease {
  constructor({settings, pg, padManager, db}) {
    this.settings = settings;
    this.pg = pg;
    this.padManager = padManager;
    this.db = db; // Etherpad's DB module: db.db is the ueberdb instance once started
    this.address = advertisedAddress(settings);
    this.role = 'starting'; // starting | holder | follower | draining | released
    this.server = null; // the holder's address when it is another instance
    this.since = null;
    this.client = null;
    this.timer = null;
    this.busy = false;
    this.waiters = new Set();
    this.loadedPads = new Set();
    this.io = null;
    this.drained = null;
    this.agent = new http.Agent({keepAlive: true});
  }

  start() {
    this.guardPadLoading();
    this.holdExitUntilDrained();
    this.timer = setInterval(() => this.tick(), TRY_EVERY_MS);
    this.timer.unref();
    this.tick();
    log(`on; this instance is ${this.address}`);
  }

  status() {
    return {enabled: true, role: this.role, address: this.address,
      server: this.role === 'holder' ? this.address : this.server,
      since: this.since, loaded_pads: this.loadedPads.size};
  }

  // No pad is ever loaded here without the lease: a stale copy in memory is how pads diverge.
  guardPadLoading() {
    const pm = this.padManager;
    if (pm.deployerLeaseGuarded) return;
    const getPad = pm.getPad;
    pm.getPad = async (id, ...rest) => {
      if (this.role !== 'holder') {
        throw new Error(`pad ${id} not loaded: this instance (${this.address}) does not hold ` +
                        'the pad lease');
      }
      const pad = await getPad.call(pm, id, ...rest);
      this.loadedPads.add(id);
      return pad;
    };
    pm.deployerLeaseGuarded = true;
  }

  async connect() {
    const settings = Object.assign({}, this.settings.dbSettings);
    const client = new this.pg.Client(Object.assign(settings, {
      keepAlive: true, query_timeout: QUERY_TIMEOUT_MS, connectionTimeoutMillis: QUERY_TIMEOUT_MS,
      application_name: `etherpad pad lease ${this.address}`,
    }));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, new Error('connection closed')));
    await client.connect();
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (
        id integer PRIMARY KEY, address text NOT NULL, pid integer NOT NULL,
        since timestamptz NOT NULL)`);
    } catch (err) {
      // Two instances creating the table at once: one of them wins, both go on.
      if (!/already exists|duplicate key/.test(err.message)) throw err;
    }
    this.client = client;
  }

  lost(client, err) {
    if (client !== this.client) return;
    this.client = null;
    try { client.end(); } catch (e) { /* already closed */ }
    if (this.role === 'holder') {
      log(`lost the lease (${err.message}): no longer serving pads`);
      this.role = 'follower';
      this.since = null;
      this.forgetPads();
    }
  }

  async tick() {
    if (this.busy || this.role === 'draining' || this.role === 'released') return;
    this.busy = true;
    try {
      if (this.client == null) await this.connect();
      const client = this.client;
      if (this.role === 'holder') {
        await client.query('SELECT 1');
        return;
      }
      const {rows: [{got}]} = await client.query(
          'SELECT pg_try_advisory_lock($1, $2) AS got', LOCK_KEYS);
      if (got) {
        await this.acquired(client);
      } else {
        this.follow(await this.holderAddress(client));
      }
    } catch (err) {
      if (this.client) this.lost(this.client, err);
      if (this.role === 'starting') this.role = 'follower';
      this.follow(null);
    } finally {
      this.busy = false;
    }
  }

  async holderAddress(client) {
    const {rows} = await client.query(
        `SELECT l.address FROM ${TABLE} l JOIN pg_locks k
           ON k.locktype = 'advisory' AND k.granted AND k.pid = l.pid
          AND k.classid = $1 AND k.objid = $2 AND k.objsubid = 2
          AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         WHERE l.id = 1`, LOCK_KEYS);
    return rows.length ? rows[0].address : null;
  }

  async acquired(client) {
    // Whatever this process read while another instance served pads may be stale.
    this.forgetPads();
    await client.query(
        `INSERT INTO ${TABLE} (id, address, pid, since) VALUES (1, $1, pg_backend_pid(), now())
         ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, pid = EXCLUDED.pid,
           since = EXCLUDED.since`, [this.address]);
    this.role = 'holder';
    this.server = null;
    this.since = new Date().toISOString();
    log(`took the lease: this instance (${this.address}) serves pads`);
    this.wake();
  }

  follow(address) {
    if (this.role === 'starting') this.role = 'follower';
    if (address === this.address) address = null; // our own row, from before a restart
    if (address !== this.server && address) log(`pads are served by ${address}`);
    this.server = address;
    if (address) this.wake();
  }

  // Drop every loaded pad and every clean value Etherpad's database layer has cached, so the
  // next read comes from the database.
  forgetPads() {
    for (const id of this.loadedPads) {
      try { this.padManager.unloadPad(id); } catch (err) { /* not loaded */ }
    }
    this.loadedPads.clear();
    const buffer = this.db.db && this.db.db.db && this.db.db.db.buffer;
    const entries = buffer && buffer._cache;
    if (entries instanceof Map) {
      for (const [key, entry] of entries) {
        if (!entry.dirty && !entry.writingInProgress) entries.delete(key);
      }
    }
    this.disconnectPadSockets();
  }

  disconnectPadSockets() {
    if (this.io == null) return 0;
    let count = 0;
    for (const namespace of Object.values(this.io.nsps || {})) {
      for (const socket of Object.values(namespace.sockets || {})) {
        socket.disconnect(true);
        count++;
      }
    }
    return count;
  }

  wake() {
    for (const waiter of this.waiters) waiter();
  }

  // Where a pad request goes: {local: true}, {address}, or null after the deadline.
  async serverFor(deadline, avoid = null) {
    for (;;) {
      if (this.role === 'holder') return {local: true};
      if (this.server && this.server !== avoid) return {address: this.server};
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise((resolve) => {
        const done = () => { clearTimeout(timer); this.waiters.delete(done); resolve(); };
        const timer = setTimeout(done, Math.min(left, TRY_EVERY_MS));
        this.waiters.add(done);
      });
      avoid = null; // a fresh read of the lease may name the same address for a reason
    }
  }

  // -- handover ---------------------------------------------------------------------------

  async drain() {
    if (this.drained) return await this.drained;
    this.drained = (async () => {
      const wasHolder = this.role === 'holder';
      this.role = 'draining';
      clearInterval(this.timer);
      if (!wasHolder) { await this.release(); return; }
      const started = Date.now();
      const sockets = this.disconnectPadSockets();
      // Let changes that arrived just before the disconnect reach the write buffer.
      await new Promise((resolve) => setTimeout(resolve, DRAIN_SETTLE_MS));
      try {
        if (this.db.db) await util.promisify(this.db.db.flush.bind(this.db.db))();
      } catch (err) {
        log(`flush failed (${err.message}); releasing the lease anyway`);
      }
      await this.release();
      log(`handed over: ${sockets} pad socket(s) closed, database flushed, lease released ` +
          `in ${Date.now() - started} ms`);
    })();
    return await this.drained;
  }

  async release() {
    const client = this.client;
    this.client = null;
    this.role = 'released';
    if (client == null) return;
    try {
      await client.query('SELECT pg_advisory_unlock($1, $2)', LOCK_KEYS);
    } catch (err) { /* the connection's end releases it as well */ }
    try { await client.end(); } catch (err) { /* already closed */ }
  }

  // Etherpad 1.8's worker pool (the threads module, for minifying) answers SIGTERM with its
  // own process.exit a few milliseconds later, before any shutdown hook has finished. The
  // holder exits only once it has handed over (bounded).
  holdExitUntilDrained() {
    if (process.deployerLeaseExitHeld) return;
    process.deployerLeaseExitHeld = true;
    const exit = process.exit.bind(process);
    process.exit = (code) => {
      if (this.role !== 'holder' && this.role !== 'draining') return exit(code);
      const drained = this.drain().catch(() => {});
      const bounded = Promise.race([drained, new Promise((r) => setTimeout(r, 3000))]);
      bounded.then(() => exit(code));
      return undefined;
    };
  }

  // Etherpad closes its database in a shutdown hook that runs beside ours: not before the
  // pad sockets are closed and the buffer is flushed.
  holdDatabaseCloseUntilDrained() {
    const ueberdb = this.db.db;
    if (ueberdb == null || ueberdb.deployerLeaseGuarded) return;
    const close = ueberdb.close;
    ueberdb.close = (callback) => {
      // Etherpad's database hook may run first: the drain starts here then.
      const drained = this.drain().catch(() => {});
      const bounded = Promise.race([drained, new Promise((r) => setTimeout(r, 2500))]);
      bounded.then(() => close.call(ueberdb, callback), () => close.call(ueberdb, callback));
    };
    ueberdb.deployerLeaseGuarded = true;
  }

  // -- forwarding -------------------------------------------------------------------------

  // The gate sits in front of every listener of the HTTP server (Etherpad's express app and
  // socket.io's engine alike), whatever order they were attached in.
  attach(server) {
    if (server.deployerLeaseGate) return;
    server.deployerLeaseGate = true;
    const emit = server.emit;
    const lease = this;
    server.emit = function (event, req, ...rest) {
      if (event === 'request') {
        if (lease.handleRequest(req, rest[0], (r) => emit.call(server, 'request', req, r))) {
          return true;
        }
      } else if (event === 'upgrade') {
        if (lease.handleUpgrade(req, rest[0], rest[1],
            () => emit.call(server, 'upgrade', req, ...rest))) return true;
      }
      return emit.call(this, event, req, ...rest);
    };
    this.holdDatabaseCloseUntilDrained();
  }

  handleRequest(req, res, serveHere) {
    if ((req.url || '').split('?')[0] === STATUS_PATH) {
      res.writeHead(200, {'Content-Type': 'application/json', 'Cache-Control': 'no-store'});
      res.end(`${JSON.stringify(this.status())}\n`);
      return true;
    }
    if (!isPadRequest(req.url)) return false;
    if (this.role === 'holder') {
      res.setHeader(SERVER_HEADER, this.address);
      return false;
    }
    if (req.headers[FORWARDED_HEADER.toLowerCase()] || this.role === 'draining' ||
        this.role === 'released') {
      // Sent here as the holder, which this instance no longer is: the sender looks again.
      res.writeHead(503, {[LEASE_HEADER]: this.role, 'Retry-After': '1',
        'Content-Type': 'text/plain'});
      res.end(`this instance (${this.address}) does not serve pads\n`);
      return true;
    }
    this.forwardRequest(req, res, serveHere);
    return true;
  }

  async forwardRequest(req, res, serveHere) {
    const deadline = Date.now() + waitSeconds() * 1000;
    let target = await this.serverFor(deadline);
    if (target && target.local) {
      res.setHeader(SERVER_HEADER, this.address);
      serveHere(res);
      return;
    }
    // Kept whole so a request the holder never received can go to the next one.
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    await new Promise((resolve) => { req.on('end', resolve); req.on('error', resolve); });
    const body = Buffer.concat(chunks);
    for (;;) {
      if (target && target.local && body.length === 0) {
        // Became the holder meanwhile; a request without a body is served as it came.
        res.setHeader(SERVER_HEADER, this.address);
        serveHere(res);
        return;
      }
      if (target == null || target.local) {
        // No holder in time, or this instance became the holder after reading the body:
        // the client asks again.
        res.writeHead(503, {'Retry-After': '1', 'Content-Type': 'text/plain'});
        res.end(target ? 'pad server changed, retry\n'
          : `no instance holds the pad lease (waited ${waitSeconds()} s)\n`);
        return;
      }
      const outcome = await this.proxy(target.address, req, res, body);
      if (outcome === 'done') return;
      // Refused, reset, or no longer the holder: look again.
      target = await this.serverFor(deadline, target.address);
    }
  }

  proxy(address, req, res, body) {
    const [host, port] = splitAddress(address);
    return new Promise((resolve) => {
      const headers = Object.assign({}, req.headers, {
        [FORWARDED_HEADER.toLowerCase()]: this.address,
        'content-length': String(body.length),
      });
      delete headers['transfer-encoding'];
      const upstream = http.request({host, port, method: req.method, path: req.url, headers,
        agent: this.agent});
      upstream.on('response', (answer) => {
        if (answer.statusCode === 503 && answer.headers[LEASE_HEADER.toLowerCase()]) {
          answer.resume();
          resolve('retry');
          return;
        }
        const out = Object.assign({}, answer.headers,
            {[FORWARDED_HEADER.toLowerCase()]: this.address});
        res.writeHead(answer.statusCode, out);
        answer.pipe(res);
        answer.on('end', () => resolve('done'));
        answer.on('error', () => { res.destroy(); resolve('done'); });
      });
      upstream.on('error', () => {
        if (res.headersSent) { res.destroy(); resolve('done'); } else {
          resolve('retry');
        }
      });
      res.on('close', () => { if (!res.writableEnded) upstream.destroy(); });
      upstream.end(body);
    });
  }

  handleUpgrade(req, socket, head, serveHere) {
    if (!isPadRequest(req.url)) return false;
    if (this.role === 'holder') return false;
    if (req.headers[FORWARDED_HEADER.toLowerCase()] || this.role === 'draining' ||
        this.role === 'released') {
      socket.end(`HTTP/1.1 503 Service Unavailable\r\n${LEASE_HEADER}: ${this.role}\r\n` +
                 'Retry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return true;
    }
    this.forwardUpgrade(req, socket, head, serveHere);
    return true;
  }

  async forwardUpgrade(req, socket, head, serveHere) {
    const deadline = Date.now() + waitSeconds() * 1000;
    socket.on('error', () => socket.destroy());
    let avoid = null;
    for (;;) {
      const target = await this.serverFor(deadline, avoid);
      if (socket.destroyed) return;
      if (target == null) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n' +
                   'Content-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      if (target.local) { serveHere(); return; }
      const [host, port] = splitAddress(target.address);
      const connected = await new Promise((resolve) => {
        const upstream = net.connect({host, port});
        upstream.once('connect', () => resolve(upstream));
        upstream.once('error', () => { upstream.destroy(); resolve(null); });
      });
      if (connected == null) { avoid = target.address; continue; }
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      }
      lines.push(`${FORWARDED_HEADER}: ${this.address}`);
      connected.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head && head.length) connected.write(head);
      connected.on('error', () => socket.destroy());
      socket.on('close', () => connected.destroy());
      connected.on('close', () => socket.destroy());
      connected.pipe(socket);
      socket.pipe(connected);
      return;
    }
  }
}

const splitAddress = (address) => {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at).replace(/^\[|\]$/g, ''), Number(address.slice(at + 1))];
};

// -- wiring -------------------------------------------------------------------------------

let lease = null;
let decided = false;

const padLease = () => {
  if (decided) return lease;
  decided = true;
  const settings = require('ep_etherpad-lite/node/utils/Settings');
  const choice = wanted(settings);
  if (!choice.on) {
    log(`off (${choice.why}): this instance serves pads itself`);
    return null;
  }
  let pg;
  try {
    pg = requireFromEtherpad('pg');
  } catch (err) {
    log(`off: no PostgreSQL driver (pg) in this install (${err.message})`);
    return null;
  }
  lease = new PadLease({settings, pg, padManager: require('ep_etherpad-lite/node/db/PadManager'),
    db: require('ep_etherpad-lite/node/db/DB')});
  lease.start();
  return lease;
};

exports.isPadRequest = isPadRequest;
exports.PadLease = PadLease;
exports.padLease = padLease;
exports.attach = (server) => { const l = padLease(); if (l && server) l.attach(server); };
exports.socketio = (io) => { const l = padLease(); if (l) l.io = io; };
exports.shutdown = async () => { if (lease) await lease.drain(); };
