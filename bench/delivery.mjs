// @ts-check
/**
 * Load generator for bench/delivery.py: N subscribers and one publisher in one Node.js process
 * (pinned to its own core by delivery.py), measuring the per-delivery cost of a server when
 * messages cannot be batched.
 *
 * Phases, in order, each reported as one JSON line on stdout with its wall-clock window
 * (epoch ms) so delivery.py can read the server's /proc CPU time over it:
 *   connect    open N subscribers (--connect-concurrency at a time) and subscribe them; then a
 *              warm-up publication every subscriber must see (the barrier that proves the server
 *              registered everyone); prints {"event":"connected"} and waits for "go" on stdin.
 *   broadcast  --broadcasts times: publish one message to the idle subscribers, time until the
 *              last of the N got it, pause 100 ms.
 *   windowed   for --seconds: at most --window messages in flight; the next one is published
 *              when one has reached every subscriber.
 *   paced      for --seconds: --rate deliveries/s offered (rate / N messages/s, evenly spaced);
 *              latency of every delivery.
 * After each phase it waits for a line on stdin (delivery.py samples /proc meanwhile).
 * --protocol centrifuge (Centrifuge JSON: connect + subscribe, pushes, {} pings answered) or
 * plain (every text frame is one payload). Payloads {"i":<seq>,"p":"<pad>"} are found with a
 * buffer scan, several per frame if the server batches.
 */

import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { WebSocket } from "ws";

const { values: args } = parseArgs({
  options: {
    "sub-url": { type: "string" },
    "pub-url": { type: "string" },
    protocol: { type: "string", default: "plain" },
    channel: { type: "string", default: "bench" },
    subscribers: { type: "string", default: "1000" },
    broadcasts: { type: "string", default: "20" },
    window: { type: "string", default: "4" },
    rate: { type: "string", default: "5000" },
    seconds: { type: "string", default: "5" },
    phases: { type: "string", default: "broadcast,windowed,paced" },
    "payload-bytes": { type: "string", default: "64" },
    "connect-concurrency": { type: "string", default: "100" },
    deadline: { type: "string", default: "120" },
  },
  strict: true,
});

const CENTRIFUGE = args.protocol === "centrifuge";
const N = Number(args.subscribers);
const PAD = "x".repeat(Number(args["payload-bytes"]));
const SECONDS = Number(args.seconds);
const PHASE_TIMEOUT_MS = 30_000;
const MAX_MESSAGES = 1 << 21;
const wallMs = () => performance.timeOrigin + performance.now();
const emit = (/** @type {object} */ record) => process.stdout.write(JSON.stringify(record) + "\n");
setTimeout(() => {
  emit({ event: "error", error: "deadline" });
  process.exit(2);
}, Number(args.deadline) * 1000).unref();

/** Deliveries of message seq so far; its publish time (performance.now()). */
const counts = new Uint32Array(MAX_MESSAGES);
const sentAt = new Float64Array(MAX_MESSAGES);
let seq = 0;
let delivered = 0;
/** @type {number[] | null} latencies (ms) of every delivery, while the paced phase records */
let latencies = null;
/** @type {((seq: number, now: number) => void) | null} called when a message reached all N */
let onComplete = null;
let live = N;
/** @type {WebSocket} */
let pub;

function publish() {
  const i = seq++;
  if (i >= MAX_MESSAGES) throw new Error("too many messages");
  sentAt[i] = performance.now();
  pub.send(`{"i":${i},"p":"${PAD}"}`);
  return i;
}

const MARK = Buffer.from('{"i":');
/** @param {Buffer} buf */
function onFrame(buf) {
  const now = performance.now();
  let pos = buf.indexOf(MARK);
  while (pos >= 0) {
    let i = 0;
    for (let k = pos + MARK.length; buf[k] >= 48 && buf[k] <= 57; k++) i = i * 10 + buf[k] - 48;
    delivered++;
    if (latencies) latencies.push(now - sentAt[i]);
    if (++counts[i] === live && onComplete) onComplete(i, now);
    pos = buf.indexOf(MARK, pos + MARK.length);
  }
}

/** @param {number} sub @returns {Promise<void>} */
function openSubscriber(sub) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(args["sub-url"] ?? "", { perMessageDeflate: false, skipUTF8Validation: true });
    let pong = false;
    let ready = false;
    const timer = setTimeout(() => reject(new Error("subscribe timed out")), 20_000);
    const settle = (/** @type {Error | null} */ err) => {
      if (ready) return;
      ready = true;
      clearTimeout(timer);
      err ? reject(err) : resolve();
    };
    ws.on("error", (err) => settle(err));
    ws.on("close", () => {
      if (ready) live--;
      settle(new Error(`closed before ready (subscriber ${sub})`));
    });
    ws.on("open", () => {
      if (!CENTRIFUGE) return settle(null);
      ws.send(`{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":${JSON.stringify(args.channel)}}}`);
    });
    ws.on("message", (/** @type {Buffer} */ data) => {
      if (CENTRIFUGE && data.indexOf("{}") >= 0 && data.indexOf('"push"') < 0 && ready) {
        if (pong) ws.send("{}");
        return;
      }
      if (!ready && CENTRIFUGE) {
        for (const line of data.toString().split("\n")) {
          const msg = JSON.parse(line);
          if (msg.id === 1) pong = Boolean(msg.connect?.pong);
          if (msg.id === 1 && msg.error) settle(new Error(`connect: ${JSON.stringify(msg.error)}`));
          if (msg.id === 2) settle(msg.error ? new Error(`subscribe: ${JSON.stringify(msg.error)}`) : null);
        }
        return;
      }
      onFrame(data);
    });
  });
}

/** Resolves with the completion time of message `i` (or rejects after PHASE_TIMEOUT_MS). */
function waitAll(/** @type {number} */ i) {
  return new Promise((resolve, reject) => {
    if (counts[i] >= live) return resolve(performance.now());
    const timer = setTimeout(() => reject(new Error(`message ${i}: ${counts[i]}/${live} after timeout`)), PHASE_TIMEOUT_MS);
    onComplete = (done, now) => {
      if (done !== i) return;
      clearTimeout(timer);
      onComplete = null;
      resolve(now);
    };
  });
}

const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

async function connectPhase() {
  const start = wallMs();
  let next = 0;
  const worker = async () => {
    while (next < N) await openSubscriber(next++);
  };
  await Promise.all(Array.from({ length: Math.min(N, Number(args["connect-concurrency"])) }, worker));
  const end = wallMs();
  pub = new WebSocket(args["pub-url"] ?? "", { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    pub.on("open", resolve);
    pub.on("error", reject);
  });
  // Warm-up barrier: keep publishing until one message reached everybody.
  for (let round = 0; ; round++) {
    const i = publish();
    try {
      await Promise.race([waitAll(i), sleep(2000).then(() => Promise.reject(new Error("warm-up")))]);
      break;
    } catch (err) {
      onComplete = null;
      if (round >= 20) throw err;
    }
  }
  return { event: "connected", connected: N, connect_seconds: (end - start) / 1000, start_ms: start, end_ms: end };
}

async function broadcastPhase() {
  const lastMs = [];
  const start = wallMs();
  for (let k = 0; k < Number(args.broadcasts); k++) {
    const i = publish();
    lastMs.push((await waitAll(i)) - sentAt[i]);
    await sleep(100);
  }
  return { event: "phase", phase: "broadcast", start_ms: start, end_ms: wallMs(), last_ms: lastMs };
}

async function windowedPhase() {
  const window = Number(args.window);
  const before = delivered;
  const first = seq;
  const start = wallMs();
  const stopAt = performance.now() + SECONDS * 1000;
  const result = await new Promise((resolve, reject) => {
    let inFlight = 0;
    const timer = setTimeout(() => reject(new Error("windowed phase stalled")), SECONDS * 1000 + PHASE_TIMEOUT_MS);
    onComplete = (_i, now) => {
      inFlight--;
      if (now < stopAt) {
        inFlight++;
        publish();
      } else if (inFlight === 0) {
        clearTimeout(timer);
        onComplete = null;
        resolve(wallMs());
      }
    };
    for (; inFlight < window; inFlight++) publish();
  });
  const end = /** @type {number} */ (result);
  const count = delivered - before;
  return {
    event: "phase", phase: "windowed", start_ms: start, end_ms: end, deliveries: count,
    expected: (seq - first) * live, per_second: count / ((end - start) / 1000),
  };
}

async function pacedPhase() {
  const perSecond = Number(args.rate) / live;
  const total = Math.max(1, Math.round(perSecond * SECONDS));
  const before = delivered;
  latencies = [];
  const start = wallMs();
  const t0 = performance.now();
  let last = -1;
  for (let k = 0; k < total; k++) {
    const due = t0 + (k * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    last = publish();
  }
  await waitAll(last);
  // Earlier messages may still be short of a subscriber; wait until the count adds up.
  const expected = total * live;
  const giveUp = performance.now() + PHASE_TIMEOUT_MS;
  while (delivered - before < expected && performance.now() < giveUp) await sleep(10);
  const end = wallMs();
  const lat = latencies;
  latencies = null;
  return {
    event: "phase", phase: "paced", start_ms: start, end_ms: end, deliveries: delivered - before,
    expected, offered_per_second: Number(args.rate), latencies_ms: summary(lat),
  };
}

/** @param {number[]} values */
function summary(values) {
  const sorted = Float64Array.from(values).sort();
  const at = (/** @type {number} */ q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.length ? sorted[sorted.length - 1] : null };
}

const PHASES = { broadcast: broadcastPhase, windowed: windowedPhase, paced: pacedPhase };

async function main() {
  emit(await connectPhase());
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await lines.next();
  for (const name of String(args.phases).split(",").filter((p) => p && p !== "none")) {
    const phase = PHASES[/** @type {keyof typeof PHASES} */ (name)];
    if (!phase) throw new Error(`unknown phase ${name}`);
    emit(await phase());
    await lines.next(); // delivery.py has sampled past the phase's end
  }
  emit({ event: "done" });
  process.exit(0);
}

main().catch((err) => {
  emit({ event: "error", error: String(err?.stack ?? err) });
  process.exit(1);
});
