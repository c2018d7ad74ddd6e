// @ts-check
/**
 * Reference server for bench/delivery.py: Node.js and the `ws` package, the floor the Python
 * servers are compared against. Same routes as baseline_app.py: /ws subscribers, /publish a
 * publisher whose every text frame is sent to every subscriber as one text frame.
 * Usage: node ws_server.mjs <port>   (127.0.0.1 only)
 */

import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
/** @type {Set<import("ws").WebSocket>} */
const subscribers = new Set();
const http = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
wss.on("connection", (ws, req) => {
  if (req.url === "/ws") {
    subscribers.add(ws);
    ws.on("close", () => subscribers.delete(ws));
  } else if (req.url === "/publish") {
    ws.on("message", (data) => {
      for (const sub of subscribers) sub.send(data, { binary: false });
    });
  } else ws.close(1008);
});
http.listen(port, "127.0.0.1");
process.on("SIGINT", () => process.exit(0));
