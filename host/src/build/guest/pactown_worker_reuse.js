// pactown's host for a JavaScript Worker built as a wasi:http component (componentize-js).
//
// The service's module is imported as it is. A Workers module (`export default { fetch }`) gets
// each request with an `env` made of the service's environment variables (strings)
// and a binding per dependency (`env.API.fetch(url | Request)`, reaching that service by name
// through the host, as a Workers service binding does: the URL's host is ignored). A service
// worker (`addEventListener("fetch", …)`) registered itself when its module was imported (the
// prelude keeps its listeners).
//
// This module implements `wasi:http/incoming-handler` itself (componentize-js then leaves out the
// engine's own fetch event, whose single event object answers once per instance): each call
// turns the incoming request into a `Request`, awaits the Worker's `Response` and writes it back,
// so one instance can serve any number of requests one after another (`instance_reuse`).
import { fetchListeners } from "./pactown_prelude.js";
import * as service from "./__PACTOWN_ENTRY__";
import { binding, workerOf } from "./pactown_binding.js";
import { getEnvironment } from "wasi:cli/environment@0.2.10";
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.10";

// Filled in by pactown: [binding name, service name] for each `depends_on`.
const BINDINGS = __PACTOWN_BINDINGS__;
// Headers about one connection: the host sets them, a guest may not (wasi:http refuses them).
const HOP_BY_HOP = new Set([
  "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te",
  "trailer", "http2-settings",
]);
// What one `blocking-write-and-flush` may carry.
const CHUNK = 4096;

// The Worker's `env`, made at an instance's first request and kept for the rest (as Workers keep
// one `env` per isolate): the snapshot taken at build time must not hold the run-time values.
let workerEnv;
function env() {
  if (!workerEnv) {
    workerEnv = {};
    for (const [k, v] of getEnvironment()) workerEnv[k] = v;
    for (const [var_, name] of BINDINGS) workerEnv[var_] = binding(name);
  }
  return workerEnv;
}

const worker = workerOf(service, "__PACTOWN_ENTRY__");

const latin1 = new TextDecoder("latin1");
const utf8 = new TextEncoder();

// A `result`'s error as componentize-js throws it: the payload, or the value itself.
function streamClosed(e) {
  const err = e && typeof e === "object" && "payload" in e ? e.payload : e;
  return err && err.tag === "closed";
}

function readAll(incoming) {
  const body = incoming.consume();
  const stream = body.stream();
  const parts = [];
  let length = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(65536n);
    } catch (e) {
      if (streamClosed(e)) break;
      throw e;
    }
    if (chunk.length) {
      parts.push(chunk);
      length += chunk.length;
    }
  }
  stream[Symbol.dispose]();
  body[Symbol.dispose]();
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

// Each call into the host goes through componentize-js's bindings, ~10 µs apiece: a request is
// read and answered with as few as it takes.
function toRequest(incoming) {
  const m = incoming.method();
  const method = m.tag === "other" ? m.val : m.tag.toUpperCase();
  // pactown hands every request to a component as `http` (TLS, if any, ends before it).
  const url = `http://${incoming.authority() ?? "localhost"}${incoming.pathWithQuery() ?? "/"}`;
  const fields = incoming.headers();
  const headers = fields.entries().map(([k, v]) => [k, latin1.decode(v)]);
  fields[Symbol.dispose]();
  const init = { method, headers };
  // A GET or HEAD carries no body a Request could hold: it is not read.
  if (method !== "GET" && method !== "HEAD") {
    const body = readAll(incoming);
    if (body.length) init.body = body;
  }
  incoming[Symbol.dispose]();
  return new Request(url, init);
}

function dispatch(request, env, ctx) {
  if (worker) return worker.fetch(request, env, ctx);
  let answer;
  const event = {
    type: "fetch",
    request,
    respondWith(r) {
      if (answer) throw new Error("FetchEvent#respondWith can't be called twice on the same event");
      answer = Promise.resolve(r);
    },
    waitUntil: ctx.waitUntil,
    passThroughOnException() {},
  };
  for (const l of fetchListeners) {
    if (typeof l === "function") l.call(globalThis, event);
    else l.handleEvent(event);
    if (answer) break;
  }
  if (!answer) {
    throw new Error("no fetch handler answered: export a Worker or call event.respondWith(…)");
  }
  return answer;
}

async function send(response, out) {
  const entries = [];
  for (const [k, v] of response.headers) {
    if (!HOP_BY_HOP.has(k)) entries.push([k, utf8.encode(v)]);
  }
  const bytes = response.body ? new Uint8Array(await response.arrayBuffer()) : undefined;
  const reply = new OutgoingResponse(Fields.fromList(entries));
  if (response.status !== 200) reply.setStatusCode(response.status);
  const body = reply.body();
  ResponseOutparam.set(out, { tag: "ok", val: reply });
  if (bytes && bytes.length) {
    const stream = body.write();
    for (let at = 0; at < bytes.length; at += CHUNK) {
      stream.blockingWriteAndFlush(bytes.subarray(at, at + CHUNK));
    }
    stream[Symbol.dispose]();
  }
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  async handle(incoming, out) {
    // `waitUntil` work goes on after the response, before the instance is done.
    const pending = [];
    const ctx = {
      waitUntil(p) {
        pending.push(Promise.resolve(p).catch((e) => console.error(String(e))));
      },
      passThroughOnException() {},
    };
    let response;
    try {
      response = await dispatch(toRequest(incoming), env(), ctx);
      if (!(response instanceof Response)) {
        throw new TypeError(`the Worker answered ${String(response)}, not a Response`);
      }
    } catch (e) {
      console.error(e && e.stack ? e.stack : String(e));
      response = new Response("internal server error\n", { status: 500 });
    }
    await send(response, out);
    await Promise.all(pending);
  },
};
