// The official `phoenix` JavaScript client, with `ws` as its transport under Node,
// against the real server. Usage: node phx_client.mjs '<json config>'
//   config: {url, token?, authToken?, headers?, joins: [topic...], ping?: topic,
//            heartbeats?: n, timeoutMs?, until?: {topic, event, job_id?, job_type?, count?}}
// With `until`, every job:* event pushed on a joined topic is recorded in `events`
// ([{topic, event, payload}]) and the client stays connected until that event arrives
// (`count` times, default once).
// Connects, joins each topic in order (recording each reply), pushes "ping" on the
// `ping` topic, waits until `heartbeats` heartbeat replies came back, then disconnects.
// With `readyFile`, that file is written once every join has been answered, so a test
// can start the work whose events it waits for only after the client listens.
// Prints one JSON line: {opened, errors, errorMessages, joins: {topic: {status,
// response}}, ping, heartbeats, opens, closes, events}. A refused connection prints
// opened: false after the first error (the client would otherwise retry forever). `closes` counts the
// connection's closes before the end: phoenix.js closes it when a heartbeat is not answered
// within the heartbeat interval, and this client then waits 60 s to reconnect, missing
// what was pushed meanwhile. So heartbeats go every 500 ms only when the test counts them,
// and otherwise at phoenix.js's default of 30 s (a slow machine under a sanitizer can take
// over 100 ms to answer one).
import { Socket } from "phoenix";
import { WebSocket } from "ws";
import { writeFileSync } from "node:fs";

const cfg = JSON.parse(process.argv[2]);
const result = { opened: false, opens: 0, closes: 0, errors: 0, errorMessages: [], joins: {}, ping: null, heartbeats: 0, events: [] };
let untilSeen = !cfg.until;
let untilCount = 0;

// A transport that adds request headers (a browser's Cookie and Origin).
class HeaderWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { headers: cfg.headers || {} });
  }
}

const opts = {
  transport: cfg.headers ? HeaderWebSocket : WebSocket,
  heartbeatIntervalMs: cfg.heartbeats ? 500 : 30000,
  reconnectAfterMs: () => 60000,
  rejoinAfterMs: () => 60000,
};
if (cfg.token) opts.params = { token: cfg.token };
if (cfg.authToken) opts.authToken = cfg.authToken;
const socket = new Socket(cfg.url, opts);

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  socket.disconnect(() => process.exit(0), 1000, "done");
  setTimeout(() => process.exit(0), 500);
}
const timer = setTimeout(() => {
  result.timedOut = true;
  finish();
}, cfg.timeoutMs || 8000);

socket.onOpen(() => {
  result.opened = true;
  result.opens += 1;
});
socket.onClose(() => {
  if (!finished) result.closes += 1;
});
socket.onError((e) => {
  result.errors += 1;
  result.errorMessages.push(String((e && (e.message || (e.error && e.error.message))) || e));
  if (!result.opened) finish();
});
socket.onMessage((m) => {
  if (m.topic === "phoenix" && m.event === "phx_reply" && m.payload.status === "ok") {
    result.heartbeats += 1;
    maybeDone();
  }
});

let pending = cfg.joins.length + (cfg.ping ? 1 : 0);
let joinsLeft = cfg.joins.length;
function joinAnswered() {
  joinsLeft -= 1;
  if (joinsLeft === 0 && cfg.readyFile) writeFileSync(cfg.readyFile, "joined\n");
}
function maybeDone() {
  if (pending === 0 && untilSeen && result.heartbeats >= (cfg.heartbeats || 0)) finish();
}

socket.connect();
const channels = {};
for (const topic of cfg.joins) {
  const ch = socket.channel(topic, {});
  channels[topic] = ch;
  ch.onMessage = (event, payload) => {
    if (event.startsWith("job:")) {
      result.events.push({ topic, event, payload });
      if (cfg.until && cfg.until.topic === topic && cfg.until.event === event &&
          (!cfg.until.job_id || (payload && payload.job_id === cfg.until.job_id)) &&
          (!cfg.until.job_type || (payload && payload.job_type === cfg.until.job_type))) {
        untilCount += 1;
        if (untilCount >= (cfg.until.count || 1)) {
          untilSeen = true;
          maybeDone();
        }
      }
    }
    return payload;
  };
  ch.join()
    .receive("ok", (response) => {
      result.joins[topic] = { status: "ok", response };
      joinAnswered();
      if (cfg.ping === topic) {
        ch.push("ping", {})
          .receive("ok", (r) => { result.ping = { status: "ok", response: r }; pending -= 1; maybeDone(); })
          .receive("error", (r) => { result.ping = { status: "error", response: r }; pending -= 1; maybeDone(); });
      }
      pending -= 1;
      maybeDone();
    })
    .receive("error", (response) => {
      result.joins[topic] = { status: "error", response };
      joinAnswered();
      ch.leave();
      if (cfg.ping === topic) pending -= 1;
      pending -= 1;
      maybeDone();
    })
    .receive("timeout", () => {
      result.joins[topic] = { status: "timeout" };
      joinAnswered();
      if (cfg.ping === topic) pending -= 1;
      pending -= 1;
      maybeDone();
    });
}
