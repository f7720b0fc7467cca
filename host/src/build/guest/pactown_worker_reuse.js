// pactown's host for a JavaScript Worker whose instances serve several requests in turn
// (`instance_reuse`), built as a component exporting `pactown:worker/handler`
// (runtime/wit/worker.wit): each request comes in whole in one call and its response goes out
// whole in the return value. Every call between the guest and the host goes through
// componentize-js's bindings, interpreted, ~10 µs apiece: a request read and answered through
// wasi:http's resources took a dozen.
//
// The service's module is imported as it is. A Workers module (`export default { fetch }`) gets
// each request with an `env` made of the service's environment variables (strings)
// and a binding per dependency (`env.API.fetch(url | Request)`, reaching that service by name
// through the host, as a Workers service binding does: the URL's host is ignored). A service
// worker (`addEventListener("fetch", …)`) registered itself when its module was imported (the
// prelude keeps its listeners).
import { bodyOf, fetchListeners, knownBody } from "./pactown_prelude.js";
import * as service from "./__PACTOWN_ENTRY__";
import { binding, workerOf } from "./pactown_binding.js";
import { getEnvironment } from "wasi:cli/environment@0.2.10";

// Filled in by pactown: [binding name, service name] for each `depends_on`.
const BINDINGS = __PACTOWN_BINDINGS__;

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

// A request from its head (`METHOD url`, then each header's name and value on lines of their
// own: see the WIT) and its body.
function toRequest(head, body) {
  const lines = head.split("\n");
  const first = lines[0];
  const space = first.indexOf(" ");
  const method = first.slice(0, space);
  const headers = [];
  for (let i = 1; i + 1 < lines.length; i += 2) headers.push([lines[i], lines[i + 1]]);
  const init = { method, headers };
  // A GET or HEAD carries no body a Request could hold.
  if (body.length && method !== "GET" && method !== "HEAD") init.body = body;
  return new Request(first.slice(space + 1), init);
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

const UTF8 = new TextEncoder();

// The answer as the host takes it (see the WIT): the response's head (its status, ` pending` if
// there is work left, its headers; the host drops those about one connection) as UTF-8, a NUL
// byte, its body. One list of bytes: the bindings lower each value they return at a cost, and
// a string one character at a time, in the interpreter.
function toAnswer(response, body, left) {
  let head = left ? `${response.status} pending` : `${response.status}`;
  for (const [k, v] of response.headers) head += `\n${k}\n${v}`;
  const text = UTF8.encode(head);
  const answer = new Uint8Array(text.length + 1 + body.length);
  answer.set(text);
  answer.set(body, text.length + 1);
  return answer;
}

// What the last request's `waitUntil` left to do: the host calls `settle` before the next.
let pending = null;

export const handler = {
  async handle(head, body) {
    const waiting = [];
    const ctx = {
      waitUntil(p) {
        waiting.push(Promise.resolve(p).catch((e) => console.error(String(e))));
      },
      passThroughOnException() {},
    };
    let response;
    try {
      response = await dispatch(toRequest(head, body), env(), ctx);
      if (!(response instanceof Response)) {
        throw new TypeError(`the Worker answered ${String(response)}, not a Response`);
      }
    } catch (e) {
      console.error(e && e.stack ? e.stack : String(e));
      response = new Response("internal server error\n", { status: 500 });
    }
    // A body made from bytes or text is taken as it is, without a turn of the event loop.
    const bytes = knownBody(response) ?? (await bodyOf(response));
    if (waiting.length) pending = Promise.all(waiting);
    return toAnswer(response, bytes, waiting.length > 0);
  },
  async settle() {
    const work = pending;
    pending = null;
    if (work) await work;
  },
};
