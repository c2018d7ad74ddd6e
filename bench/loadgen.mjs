// @ts-check
/**
 * Load generator for bench/fanout.py: N WebSocket subscribers and one publisher, in one
 * Node.js process (run pinned to its own core by fanout.py).
 *
 * Talks to either server shape:
 *   --protocol centrifuge  Centrifuge client protocol v2, JSON: connect + subscribe in one frame,
 *                          publications as {"push":{"channel":..,"pub":{"data":<payload>}}},
 *                          several replies/pushes per frame joined by "\n", {} pings answered
 *                          with {} when the connect reply says "pong": true.
 *   --protocol plain       every text frame is one payload (the FastAPI docs ConnectionManager).
 *   --deflate              subscribers offer permessage-deflate, as browsers do (default: not).
 *
 * The publisher sends payloads {"i":<seq>,"t":<performance.now() ms>,"p":"<pad>"} over its own
 * WebSocket; subscribers live in the same process, so the publish-to-receive latency is
 * measured on one monotonic clock.
 *
 * Conversation with fanout.py, one JSON object per stdout line:
 *   1. connect the subscribers, then warm up (publish {"w":k} until every subscriber saw one:
 *      this is also the barrier that proves the server has registered everyone);
 *   2. print {"event":"ready", ...} and wait for a line "go" on stdin;
 *   3. publish --messages payloads (at full speed, or at --rate per second), wait until every
 *      subscriber got all of them, or no delivery came for --drain-timeout seconds, or the
 *      --deadline passed;
 *   4. print {"event":"result", ...}, drop every connection and exit.
 * Wall-clock times in the output are epoch milliseconds, so fanout.py can line them up with
 * its /proc samples.
 */

import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";

const { values: args } = parseArgs({
  options: {
    "sub-url": { type: "string" },
    "pub-url": { type: "string" },
    protocol: { type: "string", default: "centrifuge" },
    channel: { type: "string", default: "bench" },
    subscribers: { type: "string", default: "100" },
    messages: { type: "string", default: "1000" },
    rate: { type: "string", default: "0" },
    "payload-bytes": { type: "string", default: "64" },
    "connect-concurrency": { type: "string", default: "100" },
    "drain-timeout": { type: "string", default: "15" },
    deadline: { type: "string", default: "120" },
    deflate: { type: "boolean", default: false },
  },
  strict: true,
});

/** Subscriber i connects to SUB_URLS[i % SUB_URLS.length] (--sub-url takes a comma list). */
const SUB_URLS = required("sub-url").split(",");
const PUB_URL = required("pub-url");
const CENTRIFUGE = args.protocol === "centrifuge";
if (!CENTRIFUGE && args.protocol !== "plain") fail(`unknown --protocol ${args.protocol}`);
const CHANNEL = String(args.channel);
const N = Number(args.subscribers);
const M = Number(args.messages);
const RATE = Number(args.rate);
const PAD = "x".repeat(Number(args["payload-bytes"]));
const CONNECT_CONCURRENCY = Number(args["connect-concurrency"]);
const DRAIN_TIMEOUT_MS = Number(args["drain-timeout"]) * 1000;
const DEADLINE_MS = Number(args.deadline) * 1000;
/** Subscribers offer permessage-deflate (as browsers do); off by default. */
const DEFLATE = Boolean(args.deflate);
/** Publisher sends not yet flushed to the kernel before the publisher waits. */
const PUBLISH_WINDOW = 64;

const startedAt = performance.now();
/** @returns {number} epoch milliseconds, comparable with Python's time.time() * 1000 */
const wallMs = () => performance.timeOrigin + performance.now();

// --- per-subscriber state, indexed by subscriber number ---------------------------------
const received = new Uint32Array(N);
const sawWarmup = new Uint8Array(N);
/** @type {(WebSocket | null)[]} */
const sockets = new Array(N).fill(null);
/** Most latency samples kept (128 MiB); past it every LATENCY_STRIDE-th delivery is sampled. */
const MAX_SAMPLES = 1 << 24;
const LATENCY_STRIDE = Math.ceil((N * M) / MAX_SAMPLES);
/** Latency samples in ms, one per LATENCY_STRIDE deliveries (normally every one), in arrival order. */
const latencies = new Float64Array(Math.ceil((N * M) / LATENCY_STRIDE));
let samples = 0;
let delivered = 0;
let frames = 0;
let warmedUp = 0;
let lastDeliveryAt = 0;
/** Longest time (ms) the measured window went without any delivery: the server's worst stall. */
let maxStallMs = 0;
let shuttingDown = false;
let closedEarly = 0;
/** @type {Record<string, number>} close code -> connections the server closed early */
const closeCodes = {};
/** @type {(() => void) | null} */
let onAllDelivered = null;
let liveAtStart = 0;

/**
 * Account one payload delivered to subscriber `sub` at time `now` (performance.now()).
 * @param {number} sub
 * @param {{i?: number, t: number, w?: number}} payload
 * @param {number} now
 */
function onPayload(sub, payload, now) {
  if (payload.w !== undefined) {
    if (!sawWarmup[sub]) {
      sawWarmup[sub] = 1;
      warmedUp++;
    }
    return;
  }
  if (delivered % LATENCY_STRIDE === 0 && samples < latencies.length) latencies[samples++] = now - payload.t;
  delivered++;
  received[sub]++;
  if (now - lastDeliveryAt > maxStallMs) maxStallMs = now - lastDeliveryAt;
  lastDeliveryAt = now;
  if (onAllDelivered !== null && delivered >= liveAtStart * M) onAllDelivered();
}

const PUSH_PREFIX = `{"push":{"channel":${JSON.stringify(CHANNEL)},"pub":{"data":`;

/**
 * The fields of a payload without a full JSON.parse, which would cost the load generator
 * more than the rest of its per-delivery work. Safe only because the payloads are ours:
 * `{"w":..}` for warm-up, else `{"i":..,"t":<ms>,...}`, so the first `"t":` after the payload's
 * start is its timestamp. Returns null (take the slow path) for anything unexpected.
 * @param {string} text a payload starting at `start` (a whole frame, or a pub push's data)
 * @param {number} start
 * @returns {{t: number, w?: number} | null}
 */
function fastPayload(text, start) {
  if (text.startsWith('{"w":', start)) return { t: 0, w: 1 };
  const at = text.indexOf('"t":', start);
  if (at < 0) return null;
  const t = Number.parseFloat(text.slice(at + 4, at + 40));
  return Number.isNaN(t) ? null : { t };
}

/**
 * Open subscriber `sub`; resolves once it can receive publications.
 * @param {number} sub
 * @returns {Promise<void>}
 */
function openSubscriber(sub) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(SUB_URLS[sub % SUB_URLS.length], { perMessageDeflate: DEFLATE, skipUTF8Validation: true, handshakeTimeout: 15000 });
    let ready = false;
    let answerPings = false;
    const timer = setTimeout(() => reject(new Error("subscribe timed out")), 20000);
    const settle = (/** @type {Error | null} */ error) => {
      if (ready) return;
      ready = true;
      clearTimeout(timer);
      if (error) {
        ws.terminate();
        reject(error);
      } else {
        sockets[sub] = ws;
        resolve();
      }
    };
    ws.on("error", (error) => settle(error));
    ws.on("close", (code) => {
      settle(new Error(`closed ${code} before subscribing`));
      if (!shuttingDown && sockets[sub] !== null) {
        closedEarly++;
        closeCodes[code] = (closeCodes[code] ?? 0) + 1;
        sockets[sub] = null;
      }
    });
    if (!CENTRIFUGE) {
      ws.on("open", () => settle(null));
      ws.on("message", (data) => {
        frames++;
        const text = data.toString();
        onPayload(sub, fastPayload(text, 0) ?? JSON.parse(text), performance.now());
      });
      return;
    }
    ws.on("open", () => {
      ws.send(`{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":${JSON.stringify(CHANNEL)}}}`);
    });
    ws.on("message", (data) => {
      frames++;
      const now = performance.now();
      for (const line of data.toString().split("\n")) {
        if (line === "{}") {
          if (answerPings) ws.send("{}");
          continue;
        }
        if (line === "") continue;
        if (line.startsWith(PUSH_PREFIX)) {
          const payload = fastPayload(line, PUSH_PREFIX.length);
          if (payload !== null) {
            onPayload(sub, payload, now);
            continue;
          }
        }
        const msg = JSON.parse(line);
        if (msg.push !== undefined) {
          if (msg.push.pub !== undefined) onPayload(sub, msg.push.pub.data, now);
        } else if (msg.id === 1) {
          if (msg.error) settle(new Error(`connect: ${JSON.stringify(msg.error)}`));
          else answerPings = Boolean(msg.connect?.pong);
        } else if (msg.id === 2) {
          settle(msg.error ? new Error(`subscribe: ${JSON.stringify(msg.error)}`) : null);
        }
      }
    });
  });
}

/** @returns {Promise<{connected: number, failed: number, errors: string[]}>} */
async function connectAll() {
  let next = 0;
  let failed = 0;
  /** @type {Set<string>} */
  const errors = new Set();
  const worker = async () => {
    while (next < N) {
      const sub = next++;
      try {
        await openSubscriber(sub);
      } catch (error) {
        failed++;
        if (errors.size < 5) errors.add(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, N) }, worker));
  return { connected: N - failed, failed, errors: [...errors] };
}

/** @returns {Promise<WebSocket>} the publisher connection, open */
function openPublisher() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(PUB_URL, { perMessageDeflate: false, handshakeTimeout: 15000 });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Publish until every live subscriber saw a warm-up payload (at most 20 rounds).
 * @param {WebSocket} pub
 * @param {number} live
 */
async function warmUp(pub, live) {
  for (let round = 0; round < 20 && warmedUp < live; round++) {
    pub.send(`{"w":${round},"t":${performance.now()}}`);
    const until = performance.now() + 1000;
    while (warmedUp < live && performance.now() < until) await sleep(10);
  }
  await sleep(200); // let stray warm-up rounds drain before the measured window
}

/**
 * Send the M measured payloads: full speed (only the socket's flushing holds it back) or paced.
 * @param {WebSocket} pub
 */
async function publishAll(pub) {
  let unflushed = 0;
  /** @type {(() => void) | null} */
  let wake = null;
  const flushed = () => {
    unflushed--;
    if (wake !== null && unflushed < PUBLISH_WINDOW / 2) {
      const w = wake;
      wake = null;
      w();
    }
  };
  const t0 = performance.now();
  for (let i = 0; i < M; i++) {
    if (RATE > 0) {
      const wait = t0 + (i * 1000) / RATE - performance.now();
      if (wait >= 1) await sleep(wait);
    }
    unflushed++;
    pub.send(`{"i":${i},"t":${performance.now().toFixed(4)},"p":"${PAD}"}`, flushed);
    if (unflushed >= PUBLISH_WINDOW) await new Promise((resolve) => (wake = () => resolve(undefined)));
    else if (RATE <= 0) await yieldToLoop(); // let deliveries be timestamped as they arrive
  }
}

/** @returns {Promise<string>} resolves when every live subscriber has all M, or on drain timeout */
function waitForDeliveries() {
  return new Promise((resolve) => {
    let lastSeen = -1;
    let lastProgressAt = performance.now();
    const finish = (/** @type {string} */ why) => {
      clearInterval(timer);
      onAllDelivered = null;
      resolve(why);
    };
    onAllDelivered = () => finish("complete");
    const timer = setInterval(() => {
      const now = performance.now();
      if (delivered !== lastSeen) {
        lastSeen = delivered;
        lastProgressAt = now;
      } else if (now - lastProgressAt > DRAIN_TIMEOUT_MS) finish("drain-timeout");
      if (now - startedAt > DEADLINE_MS) finish("deadline");
    }, 50);
    if (delivered >= liveAtStart * M) finish("complete");
  });
}

/**
 * @param {Float64Array} sorted
 * @param {number} q in [0, 1]
 */
function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main() {
  const connectStart = performance.now();
  const { connected, failed, errors } = await connectAll();
  const connectSeconds = (performance.now() - connectStart) / 1000;
  const pub = await openPublisher();
  pub.on("close", (code) => {
    if (!shuttingDown) closeCodes[`publisher:${code}`] = 1;
  });
  await warmUp(pub, connected);
  const warmupMissing = connected - closedEarly - warmedUp;
  emit({ event: "ready", connected, failed, errors, connect_seconds: connectSeconds, warmup_missing: warmupMissing });

  await waitForGo();
  liveAtStart = N - failed - closedEarly;
  frames = 0;
  const startWall = wallMs();
  const start = performance.now();
  lastDeliveryAt = start;
  await publishAll(pub);
  const publishSeconds = (performance.now() - start) / 1000;
  const ending = await waitForDeliveries();
  const lastAt = delivered > 0 ? lastDeliveryAt : performance.now();
  const windowSeconds = (lastAt - start) / 1000;

  const sorted = latencies.subarray(0, samples).sort();
  let complete = 0;
  for (let sub = 0; sub < N; sub++) if (received[sub] === M) complete++;
  emit({
    event: "result",
    ending,
    expected: N * M,
    delivered,
    lost: N * M - Math.min(delivered, N * M),
    subscribers_complete: complete,
    closed_early: closedEarly,
    close_codes: closeCodes,
    frames,
    publish_seconds: publishSeconds,
    window_seconds: windowSeconds,
    window_start_ms: startWall,
    window_end_ms: startWall + windowSeconds * 1000,
    deliveries_per_second: windowSeconds > 0 ? delivered / windowSeconds : 0,
    max_stall_ms: maxStallMs,
    latency_ms: {
      p50: quantile(sorted, 0.5),
      p90: quantile(sorted, 0.9),
      p99: quantile(sorted, 0.99),
      max: sorted.length ? sorted[sorted.length - 1] : null,
    },
  });
  shuttingDown = true;
  pub.terminate();
  for (const ws of sockets) ws?.terminate();
}

/** @returns {Promise<void>} resolves on the line "go" from fanout.py */
function waitForGo() {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on("line", (line) => {
      if (line.trim() === "go") {
        rl.close();
        resolve();
      }
    });
  });
}

/** @param {object} record */
function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

/** @param {string} name */
function required(name) {
  const value = args[/** @type {keyof typeof args} */ (name)];
  if (typeof value !== "string" || value === "") fail(`--${name} is required`);
  return String(value);
}

/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`loadgen: ${message}\n`);
  process.exit(2);
}

const hardStop = setTimeout(() => fail("deadline passed"), DEADLINE_MS + 30000);
hardStop.unref();
main().then(
  () => setTimeout(() => process.exit(0), 100),
  (error) => fail(String(error?.stack ?? error)),
);
