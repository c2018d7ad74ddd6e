#!/usr/bin/env node
// centrifuge-js scenarios for the end-to-end tests, driven by tests/js_harness.py.
//
//   node tests/js/scenarios.mjs <ws-url> <scenario> [<params-json>]
//
// stdout is a line protocol read by the harness:
//   - coordination lines: a bare keyword, optionally followed by one space and a JSON
//     payload (`READY`, `READY {"client":"..."}`, `OFFLINE {...}`, ...);
//   - the last line is the result, one JSON object:
//       {"ok":true,"scenario":...,"result":{...},"events":[...]}    exit code 0
//       {"ok":false,"scenario":...,"error":"...","events":[...]}    exit code 1 (2: bad usage)
// stdin carries lines from the test to the scenario (e.g. `GO`).
// Everything else (SDK debug output, console.*) goes to stderr.
//
// Every wait is bounded: `timeout` (ms, default 5000) per wait, `overall_timeout` (ms,
// default 30000) for the whole run.

import { Centrifuge, UnauthorizedError } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import net from 'node:net';
import readline from 'node:readline';
import { format } from 'node:util';

// --- stdout is reserved for the protocol ------------------------------------------------

for (const method of ['log', 'debug', 'info', 'warn', 'error', 'trace']) {
  console[method] = (...args) => process.stderr.write(format(...args) + '\n');
}

const startedAt = Date.now();
const timeline = [];
let finished = false;

function out(line) {
  process.stdout.write(line + '\n');
}

/** Prints a coordination line: `KEYWORD` or `KEYWORD {json}`. */
function signal(keyword, payload) {
  out(payload === undefined ? keyword : `${keyword} ${JSON.stringify(payload)}`);
}

function record(who, event, ctx) {
  const entry = { t: Date.now() - startedAt, who, event };
  if (ctx !== undefined) entry.ctx = plain(ctx);
  timeline.push(entry);
  if (timeline.length > 500) timeline.splice(0, timeline.length - 500);
}

/** A JSON-safe copy (drops functions, cycles and non-plain objects like Error instances). */
function plain(value) {
  if (value instanceof Error) return { name: value.name, message: value.message };
  try {
    return JSON.parse(JSON.stringify(value === undefined ? null : value));
  } catch (e) {
    return String(value);
  }
}

function finish(payload, code) {
  if (finished) return;
  finished = true;
  const line = JSON.stringify(payload);
  process.stdout.write(line + '\n', () => process.exit(code));
  // A stuck pipe must not keep the process alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

class ScenarioError extends Error {}

function fail(message) {
  throw new ScenarioError(message);
}

// --- arguments -----------------------------------------------------------------------

const [url, scenarioName, rawParams] = process.argv.slice(2);

function usage(message) {
  process.stderr.write(`${message}\nusage: node scenarios.mjs <ws-url> <scenario> [<params-json>]\n` +
    `scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`);
  finish({ ok: false, scenario: scenarioName || null, error: message, events: [] }, 2);
}

let P = {};

// --- waiting ---------------------------------------------------------------------------

function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ScenarioError(`timeout after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves with the ctx of the first `event` (matching `pred`) on `emitter`; rejects if
 *  one of `failOn` fires first or after `ms`. */
function waitEvent(emitter, event, { ms = P.timeout, failOn = [], pred = () => true, label } = {}) {
  const what = label || `'${event}'`;
  const listeners = [];
  const on = (ev, fn) => {
    emitter.on(ev, fn);
    listeners.push([ev, fn]);
  };
  const p = new Promise((resolve, reject) => {
    on(event, (ctx) => {
      if (pred(ctx)) resolve(ctx);
    });
    for (const ev of failOn) {
      on(ev, (ctx) => reject(new ScenarioError(`got '${ev}' ${JSON.stringify(plain(ctx))} while waiting for ${what}`)));
    }
  });
  return withTimeout(p, ms, what).finally(() => {
    for (const [ev, fn] of listeners) emitter.removeListener(ev, fn);
  });
}

/** An append-only list whose length can be awaited. */
class Collector {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  push(item) {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => !w.check());
  }

  /** Waits for an item matching pred (also one already there); resolves with it. */
  waitFor(pred, ms, label) {
    return withTimeout(new Promise((resolve) => {
      const w = {
        check: () => {
          const found = this.items.find(pred);
          if (found !== undefined) {
            resolve(found);
            return true;
          }
          return false;
        },
      };
      if (!w.check()) this.waiters.push(w);
    }), ms, label || `an item in ${this.name}`);
  }

  /** Waits until at least n items were collected; resolves with the items. */
  waitCount(n, ms) {
    return withTimeout(new Promise((resolve) => {
      const w = {
        check: () => {
          if (this.items.length >= n) {
            resolve(this.items.slice());
            return true;
          }
          return false;
        },
      };
      if (!w.check()) this.waiters.push(w);
    }), ms, `${n} ${this.name} (have ${this.items.length})`).catch((e) => {
      throw new ScenarioError(`${e.message}; got ${JSON.stringify(this.items)}`);
    });
  }
}

// --- stdin lines from the test -----------------------------------------------------------

const stdinLines = new Collector('stdin lines');
const stdinReader = readline.createInterface({ input: process.stdin, terminal: false });
stdinReader.on('line', (line) => {
  record('stdin', 'line', line);
  stdinLines.push(line.trim());
});
stdinReader.on('close', () => {
  stdinLines.push(null);
});

let stdinConsumed = 0;

/** Waits for the next stdin line that starts with `keyword`; returns the rest (JSON-parsed
 *  when it looks like JSON). Fails when stdin closes first. */
async function waitStdin(keyword, ms = P.stdin_timeout) {
  let index = -1;
  const isMatch = (l, i) => {
    if (i < stdinConsumed || !(l === null || l === keyword || l.startsWith(keyword + ' '))) return false;
    index = i;
    return true;
  };
  const line = await stdinLines.waitFor(isMatch, ms, `stdin line '${keyword}'`);
  if (line === null) fail(`stdin closed while waiting for '${keyword}'`);
  stdinConsumed = index + 1;
  const rest = line.slice(keyword.length).trim();
  if (!rest) return null;
  try {
    return JSON.parse(rest);
  } catch (e) {
    return rest;
  }
}

// --- WebSocket with an on/off switch and a "pull the cable" ----------------------------

// While `net.offline` is true, new sockets go to a local listener that drops every
// connection, as an unreachable server would. `dropAll()` kills the open sockets without a
// close handshake (TCP close, the server sees code 1006).
const netState = { offline: false, deadUrl: null, sockets: new Set() };

class GatedWebSocket extends WebSocket {
  constructor(address, protocols, options) {
    super(netState.offline ? netState.deadUrl : address, protocols, options);
    netState.sockets.add(this);
    this.on('close', () => netState.sockets.delete(this));
  }
}

async function startDeadListener() {
  const server = net.createServer((sock) => sock.destroy());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  netState.deadUrl = `ws://127.0.0.1:${server.address().port}/connection/websocket`;
}

function dropAll() {
  for (const s of netState.sockets) s.terminate();
}

// --- clients and subscriptions ---------------------------------------------------------

const clients = [];

function makeClient(who, opts = {}) {
  const config = {
    websocket: GatedWebSocket,
    timeout: P.timeout,
    minReconnectDelay: P.min_reconnect_ms,
    maxReconnectDelay: P.max_reconnect_ms,
    debug: P.debug === true,
    name: P.name || 'js',
    ...opts,
  };
  if (config.token === undefined) delete config.token;
  // params.protobuf: the SDK's Protobuf build (subprotocol centrifuge-protobuf, bytes payloads).
  const c = new (P.protobuf ? ProtobufCentrifuge : Centrifuge)(url, config);
  for (const ev of ['connecting', 'connected', 'disconnected', 'error']) {
    c.on(ev, (ctx) => record(who, ev, ctx));
  }
  c.on('message', (ctx) => record(who, 'message', ctx));
  clients.push(c);
  return c;
}

/** A Protobuf payload (bytes) as the JSON value it holds, or as {"hex": ...} when it is not JSON. */
function fromBytes(data) {
  if (!(data instanceof Uint8Array)) return data;
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data));
  } catch (e) {
    return { hex: Buffer.from(data).toString('hex') };
  }
}

function pubInfo(ctx) {
  const p = { data: fromBytes(ctx.data) };
  if (ctx.offset !== undefined) p.offset = ctx.offset;
  if (ctx.info !== undefined) p.info = ctx.info;
  if (ctx.tags !== undefined) p.tags = ctx.tags;
  return p;
}

/** A subscription with its events recorded and its publications, joins and leaves
 *  collected. */
function makeSub(c, who, channel, opts = {}) {
  const sub = c.newSubscription(channel, opts);
  const s = {
    sub,
    pubs: new Collector(`publications on ${channel}`),
    joins: new Collector(`joins on ${channel}`),
    leaves: new Collector(`leaves on ${channel}`),
    subscribed: new Collector(`'subscribed' events on ${channel}`),
  };
  for (const ev of ['subscribing', 'unsubscribed', 'error']) {
    sub.on(ev, (ctx) => record(who, `sub:${ev}`, ctx));
  }
  sub.on('subscribed', (ctx) => {
    record(who, 'sub:subscribed', ctx);
    s.subscribed.push(plain(ctx));
  });
  sub.on('publication', (ctx) => {
    record(who, 'sub:publication', { offset: ctx.offset });
    s.pubs.push(plain(pubInfo(ctx)));
  });
  sub.on('join', (ctx) => {
    record(who, 'sub:join', ctx);
    s.joins.push(plain(ctx.info));
  });
  sub.on('leave', (ctx) => {
    record(who, 'sub:leave', ctx);
    s.leaves.push(plain(ctx.info));
  });
  return s;
}

/** Connects `c` and waits for 'connected'; fails on 'disconnected'. */
async function connect(c, label = 'connect') {
  const connected = waitEvent(c, 'connected', { failOn: ['disconnected'], label: `'connected' (${label})` });
  c.connect();
  return plain(await connected);
}

/** Subscribes and waits for 'subscribed'; fails on 'unsubscribed'. Call it before or after
 *  connect(). */
async function subscribe(s, label = 'subscribe') {
  const subscribed = waitEvent(s.sub, 'subscribed', {
    failOn: ['unsubscribed'],
    label: `'subscribed' on ${s.sub.channel} (${label})`,
  });
  s.sub.subscribe();
  return plain(await subscribed);
}

function errorInfo(e) {
  if (e && typeof e === 'object' && 'code' in e) {
    const info = { code: e.code, message: e.message };
    if (e.temporary) info.temporary = true;
    return info;
  }
  if (e instanceof Error) return { code: null, message: `${e.name}: ${e.message}` };
  return { code: null, message: String(e) };
}

async function settle(callPromise, label) {
  try {
    return { ok: true, value: await withTimeout(callPromise, P.timeout, label) };
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    return { ok: false, error: errorInfo(e) };
  }
}

function checkCode(what, got, expected) {
  if (expected !== undefined && expected !== null && got !== expected) {
    fail(`${what}: expected code ${expected}, got ${JSON.stringify(got)}`);
  }
}

function replaceEpoch(value, epoch) {
  if (value === '$epoch') return epoch;
  if (Array.isArray(value)) return value.map((v) => replaceEpoch(v, epoch));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceEpoch(v, epoch)]));
  }
  return value;
}

/** Offsets missing between consecutive publications, and offsets seen more than once. */
function offsetReport(pubs) {
  const offsets = pubs.map((p) => p.offset).filter((o) => typeof o === 'number');
  const gaps = [];
  const duplicates = [];
  const seen = new Set();
  for (let i = 0; i < offsets.length; i++) {
    if (seen.has(offsets[i])) duplicates.push(offsets[i]);
    seen.add(offsets[i]);
    if (i > 0 && offsets[i] > offsets[i - 1] + 1) {
      for (let o = offsets[i - 1] + 1; o < offsets[i]; o++) gaps.push(o);
    }
  }
  return { offsets, gaps, duplicates };
}

// --- scenarios -------------------------------------------------------------------------
// Each takes the params and returns the result object. Throwing ScenarioError fails the
// run with its message.

const SCENARIOS = {
  /** params: token. Connects and reports the 'connected' ctx. */
  async connect_token() {
    const c = makeClient('c', { token: P.token });
    const connected = await connect(c);
    if (!connected.client) fail(`'connected' without a client id: ${JSON.stringify(connected)}`);
    return { connected, state: c.state };
  },

  /** params: token (optional, default none), expect_code (optional). Expects the client to
   *  end 'disconnected' without ever being connected; reports the code. */
  async anonymous_refused() {
    const c = makeClient('c', { token: P.token || undefined });
    const disconnected = waitEvent(c, 'disconnected', { failOn: ['connected'] });
    c.connect();
    const ctx = plain(await disconnected);
    checkCode('disconnected', ctx.code, P.expect_code);
    return {
      disconnected: ctx,
      errors: timeline.filter((e) => e.event === 'error').map((e) => e.ctx),
      state: c.state,
    };
  },

  /** params: token, channel, count, sub_options, receive_timeout. Subscribes, prints
   *  `READY {"client", "subscribed"}`, then waits for `count` publications. */
  async subscribe_receive() {
    const c = makeClient('c', { token: P.token });
    const s = makeSub(c, 'c', P.channel, P.sub_options || {});
    const subscribed = subscribe(s);
    const connected = await connect(c);
    const subCtx = await subscribed;
    signal('READY', { client: connected.client, subscribed: subCtx });
    const count = P.count ?? 1;
    const pubs = await s.pubs.waitCount(count, P.receive_timeout ?? P.timeout);
    // deltaStats: how many payloads came as fossil deltas (centrifuge-js 5.7+).
    const deltaStats = typeof s.sub.deltaStats === 'function' ? s.sub.deltaStats() : null;
    return { client: connected.client, subscribed: subCtx, publications: pubs, deltaStats, ...offsetReport(pubs) };
  },

  /** params: token, channel, data, subscribe (default true), expect ('ok' | 'error' |
   *  'any'), expect_code, expect_echo (default: when subscribed and expecting ok). */
  async publish() {
    const c = makeClient('c', { token: P.token });
    const doSubscribe = P.subscribe !== false;
    const s = doSubscribe ? makeSub(c, 'c', P.channel, P.sub_options || {}) : null;
    const subscribed = s ? subscribe(s) : null;
    const connected = await connect(c);
    const subCtx = subscribed ? await subscribed : null;
    const data = P.data ?? { text: 'hello from centrifuge-js' };
    const call = s ? s.sub.publish(data) : c.publish(P.channel, data);
    const r = await settle(call, 'publish reply');
    const result = { client: connected.client, subscribed: subCtx, published: r.ok };
    if (!r.ok) result.error = r.error;
    const expect = P.expect || 'any';
    if (expect === 'ok' && !r.ok) fail(`publish failed: ${JSON.stringify(r.error)}`);
    if (expect === 'error' && r.ok) fail('publish succeeded, expected an error');
    if (!r.ok) checkCode('publish error', r.error.code, P.expect_code);
    const expectEcho = P.expect_echo ?? (r.ok && s !== null);
    if (expectEcho) {
      const echo = await s.pubs.waitFor(() => true, P.timeout, 'own publication to arrive');
      result.echo = echo;
    }
    return result;
  },

  async publish_allowed() {
    P.expect = 'ok';
    return SCENARIOS.publish();
  },

  async publish_refused() {
    P.expect = 'error';
    P.expect_code = P.expect_code ?? 103;
    return SCENARIOS.publish();
  },

  /** params: token (client A), token2 (client B, default token), channel, sub_options,
   *  leave_by ('unsubscribe' | 'disconnect'). A subscribes with joinLeave; B joins; A reads
   *  presence and stats; B leaves; A reads them again. */
  async presence_join_leave() {
    const a = makeClient('a', { token: P.token });
    const sa = makeSub(a, 'a', P.channel, { joinLeave: true, ...(P.sub_options || {}) });
    const aSubscribed = subscribe(sa, 'A');
    const aConnected = await connect(a, 'A');
    const aSub = await aSubscribed;

    const b = makeClient('b', { token: P.token2 || P.token });
    const sb = makeSub(b, 'b', P.channel, P.sub_options_b || {});
    const bSubscribed = subscribe(sb, 'B');
    const bConnected = await connect(b, 'B');
    await bSubscribed;
    const bClient = bConnected.client;

    const join = await sa.joins.waitFor((i) => i.client === bClient, P.timeout, `A to see B (${bClient}) join`);
    const presenceBefore = plain(await withTimeout(sa.sub.presence(), P.timeout, 'presence reply'));
    const statsBefore = plain(await withTimeout(sa.sub.presenceStats(), P.timeout, 'presence_stats reply'));

    const leaveBy = P.leave_by || 'unsubscribe';
    if (leaveBy === 'disconnect') {
      b.disconnect();
    } else {
      sb.sub.unsubscribe();
    }
    const leave = await sa.leaves.waitFor((i) => i.client === bClient, P.timeout, `A to see B (${bClient}) leave`);
    const presenceAfter = plain(await withTimeout(sa.sub.presence(), P.timeout, 'presence reply'));
    const statsAfter = plain(await withTimeout(sa.sub.presenceStats(), P.timeout, 'presence_stats reply'));
    return {
      a_client: aConnected.client,
      b_client: bClient,
      a_subscribed: aSub,
      join,
      leave,
      presence_before: presenceBefore,
      stats_before: statsBefore,
      presence_after: presenceAfter,
      stats_after: statsAfter,
      joins: sa.joins.items,
      leaves: sa.leaves.items,
    };
  },

  /** params: token, channel, subscribe (default true), sub_options, publish (list of data
   *  published by this client first), queries (list of {limit, since, reverse}; "$epoch" in
   *  them is replaced by the stream's epoch: from the subscribed ctx, else from a history
   *  call with limit 0). Each result is {query, publications, epoch, offset} or {query, error}. */
  async history() {
    const c = makeClient('c', { token: P.token });
    const doSubscribe = P.subscribe !== false;
    const s = doSubscribe ? makeSub(c, 'c', P.channel, P.sub_options || {}) : null;
    const subscribed = s ? subscribe(s) : null;
    const connected = await connect(c);
    const subCtx = subscribed ? await subscribed : null;
    const published = [];
    for (const data of P.publish || []) {
      const r = await settle(c.publish(P.channel, data), 'publish reply');
      if (!r.ok) fail(`publish of ${JSON.stringify(data)} failed: ${JSON.stringify(r.error)}`);
      published.push(data);
    }
    const queries = P.queries || [{ limit: 10 }];
    let epoch = subCtx?.streamPosition?.epoch || '';
    if (!epoch && JSON.stringify(queries).includes('"$epoch"')) {
      // The stream's epoch, for the queries that use it: a history call without publications.
      const r = await settle(s ? s.sub.history({ limit: 0 }) : c.history(P.channel, { limit: 0 }), 'history reply');
      if (!r.ok) fail(`history (limit 0) for the epoch failed: ${JSON.stringify(r.error)}`);
      epoch = r.value.epoch;
    }
    const results = [];
    for (const q of queries) {
      const opts = replaceEpoch(q, epoch);
      const call = s ? s.sub.history(opts) : c.history(P.channel, opts);
      const r = await settle(call, 'history reply');
      if (r.ok) {
        const h = plain(r.value);
        results.push({ query: opts, publications: h.publications.map(pubInfo), epoch: h.epoch, offset: h.offset });
      } else {
        results.push({ query: opts, error: r.error });
      }
    }
    return { client: connected.client, subscribed: subCtx, published, results };
  },

  /** params: token, calls (list of {method, data}) or method + data. Reports each result
   *  {data} or {error}. */
  async rpc() {
    const c = makeClient('c', { token: P.token });
    const connected = await connect(c);
    const calls = P.calls || [{ method: P.method, data: P.data ?? null }];
    const results = [];
    for (const call of calls) {
      const r = await settle(c.rpc(call.method, call.data ?? null), `rpc '${call.method}' reply`);
      results.push(r.ok ? { method: call.method, data: plain(r.value).data ?? null } : { method: call.method, error: r.error });
    }
    return { client: connected.client, results };
  },

  /** params: token (short-lived), refresh_tokens (list; getToken returns them in turn, then
   *  the last one again) or refresh_token, stay_ms (default 4000), channel (optional: also
   *  subscribe and report it stayed subscribed), probe_rpc (optional method called at the
   *  end, with probe_data). */
  async token_refresh() {
    const tokens = P.refresh_tokens || (P.refresh_token ? [P.refresh_token] : []);
    let calls = 0;
    const getToken = async (ctx) => {
      calls++;
      record('c', 'getToken', ctx);
      if (!tokens.length) throw new UnauthorizedError('no refresh token');
      return tokens[Math.min(calls - 1, tokens.length - 1)];
    };
    const c = makeClient('c', { token: P.token, getToken });
    const s = P.channel ? makeSub(c, 'c', P.channel, P.sub_options || {}) : null;
    const subscribed = s ? subscribe(s) : null;
    const connected = await connect(c);
    if (subscribed) await subscribed;
    signal('CONNECTED', { client: connected.client });
    const stayMs = P.stay_ms ?? 4000;
    await new Promise((resolve) => setTimeout(resolve, stayMs));
    const since = (ev) => timeline.filter((e) => e.who === 'c' && e.event === ev).map((e) => ({ t: e.t, ...e.ctx }));
    const result = {
      client: connected.client,
      state: c.state,
      connected_after: c.state === 'connected',
      get_token_calls: calls,
      connected_events: since('connected'),
      connecting_events: since('connecting').filter((e) => e.code !== 0),
      disconnected_events: since('disconnected'),
      errors: since('error'),
      subscription_state: s ? s.sub.state : null,
      subscribed_events: s ? s.subscribed.items.length : null,
    };
    if (P.probe_rpc) {
      const r = await settle(c.rpc(P.probe_rpc, P.probe_data ?? null), 'probe rpc reply');
      result.probe = r.ok ? { data: plain(r.value).data ?? null } : { error: r.error };
    }
    if (!result.connected_after) fail(`not connected after ${stayMs} ms: ${JSON.stringify(result)}`);
    return result;
  },

  /** params: token, channel, sub_options (default {recoverable, positioned}), before (number
   *  of publications to receive before going offline, default 0), after (number received
   *  after coming back, recovered + live; default: only those of the resubscribe),
   *  offline_mode ('drop': kill the socket, reconnects blocked until GO; 'disconnect':
   *  c.disconnect() then c.connect() on GO).
   *  stdout: READY {client, subscribed} -> (before pubs) -> OFFLINE {position, received}
   *  stdin:  GO -> reconnect -> stdout: RESUBSCRIBED {ctx} -> (after pubs) -> result. */
  /** params: token, channel, kind ('map' | 'shared_poll'). Subscribes with the SDK's map or
   *  shared poll subscription and expects it to end unsubscribed; reports the code. */
  async newer_type_refused() {
    const c = makeClient('c', { token: P.token });
    const sub = P.kind === 'map' ? c.newMapSubscription(P.channel) : c.newSharedPollSubscription(P.channel);
    const unsubscribed = waitEvent(sub, 'unsubscribed', { failOn: ['subscribed'] });
    const errors = [];
    sub.on('error', (ctx) => errors.push(plain(ctx)));
    sub.subscribe();
    await connect(c);
    const ctx = plain(await unsubscribed);
    return { unsubscribed: ctx, errors, sub_state: sub.state, state: c.state };
  },

  /** params: token, channel, positions (a list of {offset, epoch}). Subscribes with a
   *  getState callback that returns the next position of the list on each call; the SDK then
   *  asks the server to reject an unrecoverable position with 112 (subscribe flag 2) and calls
   *  getState again when it does. Reports the calls and the 'subscribed' ctx. */
  async get_state() {
    const c = makeClient('c', { token: P.token });
    let calls = 0;
    const getState = async () => {
      const position = P.positions[Math.min(calls, P.positions.length - 1)];
      calls += 1;
      return position;
    };
    const s = makeSub(c, 'c', P.channel, { ...(P.sub_options || {}), getState });
    const subscribed = subscribe(s);
    await connect(c);
    const ctx = await subscribed;
    return { get_state_calls: calls, subscribed: ctx, sub_errors: timeline.filter((e) => e.event === 'sub:error').map((e) => e.ctx) };
  },

  /** params: token, channel (with history, presence and client publish), rpc_method, data
   *  (JSON), binary_hex. With the Protobuf build: subscribes, prints `READY`, waits for one
   *  publication, publishes `data` as JSON bytes and `binary_hex` as raw bytes, then reads
   *  presence, presence stats, history and one RPC (payloads decoded with fromBytes). */
  async protobuf_calls() {
    P.protobuf = true;
    const c = makeClient('c', { token: P.token });
    const s = makeSub(c, 'c', P.channel);
    const subscribed = subscribe(s);
    const connected = await connect(c);
    signal('READY', { client: connected.client, subscribed: await subscribed });
    await s.pubs.waitCount(1, P.timeout);
    const json = new TextEncoder().encode(JSON.stringify(P.data));
    await withTimeout(s.sub.publish(json), P.timeout, 'publish reply');
    await withTimeout(s.sub.publish(Buffer.from(P.binary_hex, 'hex')), P.timeout, 'binary publish reply');
    const pubs = await s.pubs.waitCount(3, P.timeout);
    const presence = await withTimeout(s.sub.presence(), P.timeout, 'presence reply');
    const stats = await withTimeout(s.sub.presenceStats(), P.timeout, 'presence_stats reply');
    const history = await withTimeout(s.sub.history({ limit: -1 }), P.timeout, 'history reply');
    const rpc = await withTimeout(c.rpc(P.rpc_method, json), P.timeout, 'rpc reply');
    const me = presence.clients[connected.client];
    return {
      client: connected.client,
      publications: pubs,
      presence: { clients: Object.keys(presence.clients), user: me.user, conn_info: fromBytes(me.connInfo) },
      stats: plain(stats),
      history: history.publications.map((p) => ({ offset: p.offset, data: fromBytes(p.data) })),
      rpc: fromBytes(rpc.data),
    };
  },

  async recovery() {
    const c = makeClient('c', { token: P.token });
    const s = makeSub(c, 'c', P.channel, P.sub_options || { recoverable: true, positioned: true });
    const subscribed = subscribe(s, 'first');
    const connected = await connect(c);
    const first = await subscribed;
    signal('READY', { client: connected.client, subscribed: first });

    const before = P.before ?? 0;
    await s.pubs.waitCount(before, P.receive_timeout ?? P.timeout);
    const received = s.pubs.items.length;
    const lastOffset = received ? s.pubs.items[received - 1].offset : first.streamPosition?.offset;

    const mode = P.offline_mode || 'drop';
    if (mode === 'drop') {
      const connecting = waitEvent(c, 'connecting', { label: "'connecting' after the socket was dropped" });
      netState.offline = true;
      dropAll();
      await connecting;
    } else if (mode === 'disconnect') {
      c.disconnect();
    } else {
      fail(`unknown offline_mode ${mode}`);
    }
    signal('OFFLINE', {
      mode,
      received,
      position: { offset: lastOffset ?? null, epoch: first.streamPosition?.epoch ?? null },
      state: c.state,
      sub_state: s.sub.state,
    });

    await waitStdin('GO');
    const reconnected = waitEvent(c, 'connected', { ms: P.timeout + (P.max_reconnect_ms ?? 0), label: "'connected' after GO" });
    const secondSub = s.subscribed.waitFor(
      (ctx, i) => i >= 1,
      P.timeout + (P.max_reconnect_ms ?? 0),
      "a second 'subscribed' event (resubscribe)",
    );
    if (mode === 'drop') {
      netState.offline = false;
    } else {
      c.connect();
    }
    const again = plain(await reconnected);
    const resub = await secondSub;
    // Recovered publications are delivered right after the 'subscribed' event, in the same
    // task: they are all in by now.
    await new Promise((resolve) => setImmediate(resolve));
    signal('RESUBSCRIBED', { client: again.client, subscribed: resub, received: s.pubs.items.length });
    if (P.after !== undefined && P.after !== null) {
      await s.pubs.waitCount(before + P.after, P.receive_timeout ?? P.timeout);
    }
    const pubs = s.pubs.items.slice();
    return {
      client_before: connected.client,
      client_after: again.client,
      subscribed_first: first,
      resubscribed: resub,
      received_before_offline: received,
      publications: pubs,
      ...offsetReport(pubs),
    };
  },

  /** params: token, channel, expect_code (optional). Expects the subscription to end
   *  unsubscribed (not subscribed); reports the code. */
  async subscribe_refused() {
    const c = makeClient('c', { token: P.token });
    const s = makeSub(c, 'c', P.channel, P.sub_options || {});
    const unsubscribed = waitEvent(s.sub, 'unsubscribed', { failOn: ['subscribed'] });
    s.sub.subscribe();
    const connected = await connect(c);
    const ctx = plain(await unsubscribed);
    checkCode('unsubscribed', ctx.code, P.expect_code);
    return {
      client: connected.client,
      unsubscribed: ctx,
      sub_errors: timeline.filter((e) => e.event === 'sub:error').map((e) => e.ctx),
      state: c.state,
      sub_state: s.sub.state,
    };
  },

  async permission_denied() {
    P.expect_code = P.expect_code ?? 103;
    return SCENARIOS.subscribe_refused();
  },

  async unknown_channel() {
    P.expect_code = P.expect_code ?? 102;
    return SCENARIOS.subscribe_refused();
  },

  /** params: token, transports (a list of {transport, endpoint}: e.g. a refused websocket,
   *  then http_stream and/or sse), emulation_endpoint, channel (history, presence, client
   *  publish), rpc_method, data. Connects through the first transport that works (Node's
   *  fetch and ReadableStream, the eventsource package), subscribes with recovery, publishes
   *  `data` and waits for it, reads presence and calls the RPC.
   *  stdout: READY {client, transport, subscribed, publication, presence, rpc} -> OFFLINE
   *  stdin:  GO -> c.connect() -> stdout: RESUBSCRIBED {...} -> result (every publication). */
  async fallback() {
    const c = new Centrifuge(P.transports, {
      token: P.token,
      websocket: WebSocket,
      fetch: globalThis.fetch,
      readableStream: globalThis.ReadableStream,
      eventsource: EventSource,
      emulationEndpoint: P.emulation_endpoint,
      timeout: P.timeout,
      minReconnectDelay: P.min_reconnect_ms,
      maxReconnectDelay: P.max_reconnect_ms,
      debug: P.debug === true,
    });
    for (const ev of ['connecting', 'connected', 'disconnected', 'error']) {
      c.on(ev, (ctx) => record('c', ev, ctx));
    }
    clients.push(c);
    const s = makeSub(c, 'c', P.channel, { recoverable: true, positioned: true });
    const subscribed = subscribe(s, 'first');
    const connected = await connect(c);
    const first = await subscribed;
    await withTimeout(s.sub.publish(P.data), P.timeout, 'publish reply');
    const [publication] = await s.pubs.waitCount(1, P.timeout);
    const presence = await withTimeout(s.sub.presence(), P.timeout, 'presence reply');
    const rpc = await withTimeout(c.rpc(P.rpc_method, P.data), P.timeout, 'rpc reply');
    signal('READY', {
      client: connected.client,
      transport: connected.transport,
      subscribed: first,
      publication,
      presence: Object.keys(presence.clients),
      rpc: plain(rpc.data),
    });
    c.disconnect();
    signal('OFFLINE', { received: s.pubs.items.length });
    await waitStdin('GO');
    const reconnected = waitEvent(c, 'connected', { label: "'connected' after GO" });
    const secondSub = s.subscribed.waitFor((ctx, i) => i >= 1, P.timeout, "a second 'subscribed' event");
    c.connect();
    const again = plain(await reconnected);
    const resub = await secondSub;
    await new Promise((resolve) => setImmediate(resolve));
    signal('RESUBSCRIBED', { client: again.client, transport: again.transport, subscribed: resub });
    const pubs = await s.pubs.waitCount(P.total, P.timeout);
    return { publications: pubs, ...offsetReport(pubs) };
  },

  /** params: token, stay_ms (default 3000), channel (optional). Connects and stays connected,
   *  e.g. across several server pings; fails on any disconnect or reconnect. */
  async idle() {
    const c = makeClient('c', { token: P.token });
    const s = P.channel ? makeSub(c, 'c', P.channel, P.sub_options || {}) : null;
    const subscribed = s ? subscribe(s) : null;
    const connected = await connect(c);
    if (subscribed) await subscribed;
    signal('CONNECTED', { client: connected.client });
    const stayMs = P.stay_ms ?? 3000;
    const dropped = waitEvent(c, 'connecting', { ms: stayMs, label: 'nothing' }).then(
      (ctx) => ctx,
      (e) => (e instanceof ScenarioError && e.message.startsWith('timeout') ? null : Promise.reject(e)),
    );
    const ctx = await dropped;
    if (ctx) fail(`connection lost while idle: ${JSON.stringify(plain(ctx))}`);
    return { client: connected.client, state: c.state, sub_state: s ? s.sub.state : null };
  },
};

// --- main ------------------------------------------------------------------------------

async function main() {
  if (!url || !scenarioName) return usage('missing arguments');
  if (!Object.prototype.hasOwnProperty.call(SCENARIOS, scenarioName)) {
    return usage(`unknown scenario '${scenarioName}'`);
  }
  try {
    P = rawParams ? JSON.parse(rawParams) : {};
  } catch (e) {
    return usage(`params are not JSON: ${e.message}`);
  }
  P.timeout = P.timeout ?? 5000;
  P.stdin_timeout = P.stdin_timeout ?? 2 * P.timeout;
  P.min_reconnect_ms = P.min_reconnect_ms ?? 100;
  P.max_reconnect_ms = P.max_reconnect_ms ?? 1000;
  const overall = P.overall_timeout ?? 30000;

  await startDeadListener();
  const watchdog = setTimeout(() => {
    process.stderr.write(`scenario ${scenarioName}: overall timeout after ${overall} ms\n`);
    finish({ ok: false, scenario: scenarioName, error: `overall timeout after ${overall} ms`, events: timeline }, 1);
  }, overall);

  let payload;
  let code;
  try {
    const result = await SCENARIOS[scenarioName]();
    payload = { ok: true, scenario: scenarioName, result: plain(result), events: timeline };
    code = 0;
  } catch (e) {
    const message = e instanceof ScenarioError ? e.message : (e && e.stack) || String(e);
    process.stderr.write(`scenario ${scenarioName} failed: ${message}\n`);
    payload = { ok: false, scenario: scenarioName, error: message, events: timeline };
    code = 1;
  } finally {
    clearTimeout(watchdog);
    for (const c of clients) {
      try {
        c.disconnect();
      } catch (e) {
        // already gone
      }
    }
  }
  // Let the close frames go out before exiting.
  await new Promise((resolve) => setTimeout(resolve, 50));
  finish(payload, code);
}

process.on('unhandledRejection', (e) => {
  // centrifuge-js re-raises exceptions of event handlers this way (see _reportDispatchError).
  process.stderr.write(`unhandled rejection: ${(e && e.stack) || JSON.stringify(plain(e))}\n`);
  record('process', 'unhandledRejection', e);
});

main();
