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
