'use strict';
// The release marker for the deployer's health poller.
//
// Etherpad 1.8.x names its version only through `Server: Etherpad <git commit>`, and an
// install without .git (the npm release, a copied tree) sends no commit at all. This plugin
// adds `X-Etherpad-Release: <release>` to every response so every install reports its
// release the same way.
//
// Hooks: expressConfigure runs before any route is registered in 1.8.x (its hook functions
// are all called before the expressCreateServer ones); 1.9+ also has expressPreSession,
// which runs earlier still. Both are declared; the middleware is added once per app.

const fs = require('fs');
const path = require('path');

const padLease = require('./lease');

const HEADER = 'X-Etherpad-Release';

// The release installed in this tree. <root>/RELEASE is written by the installer and
// describes what is on disk, so it wins over the environment (which says what someone
// wanted); the Etherpad package version is the last resort.
const readRelease = () => {
  const {root} = require('ep_etherpad-lite/node/utils/Settings');
  try {
    const fromFile = fs.readFileSync(path.join(root, 'RELEASE'), 'utf8').trim();
    if (fromFile) return fromFile;
  } catch (err) {
    // no RELEASE file: an install made by hand
  }
  if (process.env.ETHERPAD_RELEASE) return process.env.ETHERPAD_RELEASE.trim();
  try {
    return require('ep_etherpad-lite/package.json').version;
  } catch (err) {
    return 'unknown';
  }
};

const release = readRelease();
const configured = new WeakSet();

const addHeader = (app) => {
  if (configured.has(app)) return;
  configured.add(app);
  app.use((req, res, next) => {
    res.setHeader(HEADER, release);
    next();
  });
};

exports.release = release;
exports.expressPreSession = (hookName, {app}) => { addHeader(app); };
exports.expressConfigure = (hookName, {app}) => { addHeader(app); };

// Idle connections outlive the load balancer's.
//
// An ALB keeps its connections to a target open for its idle timeout (60 s by default) and
// sends the next request on one of them. Node closes an idle keep-alive connection after
// 5 s: a request the load balancer sends at that instant meets a closing socket, and the
// user gets a 502 that no health check explains. The target must be the one to wait
// longer (AWS: "configure the idle timeout of your application to be larger than the idle
// timeout configured for the load balancer"). ETHERPAD_KEEPALIVE_TIMEOUT_S, 65 by default.
const keepAliveSeconds = () => {
  const value = Number(process.env.ETHERPAD_KEEPALIVE_TIMEOUT_S || 65);
  return Number.isFinite(value) && value > 0 ? value : 65;
};
exports.keepAliveSeconds = keepAliveSeconds;
exports.expressCreateServer = (hookName, {server}) => {
  if (!server) return;
  padLease.attach(server);
  const ms = keepAliveSeconds() * 1000;
  server.keepAliveTimeout = ms;
  // A request's headers must be allowed longer than the idle wait, or Node cuts the socket.
  server.headersTimeout = Math.max(server.headersTimeout || 0, ms + 1000);
};

// A database restart must not kill Etherpad.
//
// node-postgres emits 'error' on the pool when an idle connection breaks (the server
// restarted, failed over, or cut it), and an 'error' event without a listener throws:
// Etherpad's uncaughtException handler then exits. Etherpad 1.8's ueberdb2 (1.4) never adds
// that listener, so a PostgreSQL restart — an RDS reboot, a failover, a minor version
// upgrade — stopped every instance at once. With a listener the pool drops the broken
// connection and opens a new one for the next query, as node-postgres documents.
const keepPoolErrorsFromKillingEtherpad = () => {
  let pg;
  try {
    const db = require.resolve('ep_etherpad-lite/node/db/DB');
    const ueberdb = require.resolve('ueberdb2', {paths: [path.dirname(db)]});
    pg = require(require.resolve('pg', {paths: [path.dirname(ueberdb)]}));
  } catch (err) {
    return; // no PostgreSQL driver in this install: nothing to guard
  }
  const proto = pg.Pool && pg.Pool.prototype;
  if (!proto || proto.deployerGuarded) return;
  const emit = proto.emit;
  proto.emit = function (event, ...args) {
    if (event === 'error' && this.listenerCount('error') === 0) {
      const [err] = args;
      console.warn(`ep_deployer_release: database connection lost (${err && err.message}); ` +
                   'the pool reconnects on the next query');
      return false;
    }
    return emit.call(this, event, ...args);
  };
  proto.deployerGuarded = true;
};
keepPoolErrorsFromKillingEtherpad();

// Nor may it cut users off. Etherpad saves a session for every visitor (saveUninitialized),
// and a save that fails reaches express-session after the response went out: the socket is
// destroyed, and the load balancer's next request on that kept-alive connection gets no
// answer — a 502 for a user who did nothing wrong. While the database is away a session
// that cannot be saved is simply not kept; the page was served all the same.
const keepSessionSaveErrorsFromCuttingConnections = () => {
  let SessionStore;
  try {
    SessionStore = require('ep_etherpad-lite/node/db/SessionStore');
  } catch (err) {
    return; // another Etherpad layout: leave it alone
  }
  const proto = SessionStore && SessionStore.prototype;
  if (!proto || typeof proto.set !== 'function' || proto.deployerGuarded) return;
  const set = proto.set;
  proto.set = function (sid, sess, fn) {
    return set.call(this, sid, sess, (err, ...rest) => {
      if (err != null) {
        console.warn(`ep_deployer_release: session not saved (${err.message || err}); ` +
                     'serving on without it');
      }
      if (typeof fn === 'function') fn(null, ...rest);
    });
  };
  proto.deployerGuarded = true;
};
keepSessionSaveErrorsFromCuttingConnections();

// One pad server per environment (lease.js): the socket.io server, to close pad sockets at
// a handover, and the handover itself at shutdown.
exports.socketio = (hookName, {io}) => { padLease.socketio(io); };
exports.shutdown = async () => { await padLease.shutdown(); };
