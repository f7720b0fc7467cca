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
import { bodyOf, fetchListeners } from "./pactown_prelude.js";
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

// A request's headers, `name\nvalue\n…` (see the WIT), as pairs.
function headerPairs(text) {
  const parts = text ? text.split("\n") : [];
  const pairs = [];
  for (let i = 0; i + 1 < parts.length; i += 2) pairs.push([parts[i], parts[i + 1]]);
  return pairs;
}

function toRequest(r) {
  const init = { method: r.method, headers: headerPairs(r.headers) };
  // A GET or HEAD carries no body a Request could hold.
  if (r.body.length && r.method !== "GET" && r.method !== "HEAD") init.body = r.body;
  return new Request(r.url, init);
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

// The response as the host takes it (which drops the headers about one connection).
async function toAnswer(response) {
  let headers = "";
  for (const [k, v] of response.headers) headers += headers ? `\n${k}\n${v}` : `${k}\n${v}`;
  return { status: response.status, headers, body: await bodyOf(response), pending: false };
}

// What the last request's `waitUntil` left to do: the host calls `settle` before the next.
let pending = null;

export const handler = {
  async handle(request) {
    const waiting = [];
    const ctx = {
      waitUntil(p) {
        waiting.push(Promise.resolve(p).catch((e) => console.error(String(e))));
      },
      passThroughOnException() {},
    };
    let response;
    try {
      response = await dispatch(toRequest(request), env(), ctx);
      if (!(response instanceof Response)) {
        throw new TypeError(`the Worker answered ${String(response)}, not a Response`);
      }
    } catch (e) {
      console.error(e && e.stack ? e.stack : String(e));
      response = new Response("internal server error\n", { status: 500 });
    }
    const answer = await toAnswer(response);
    if (waiting.length) {
      pending = Promise.all(waiting);
      answer.pending = true;
    }
    return answer;
  },
  async settle() {
    const work = pending;
    pending = null;
    if (work) await work;
  },
};
