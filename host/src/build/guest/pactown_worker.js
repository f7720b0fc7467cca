// pactown's host for a JavaScript Worker built as a wasi:http component (componentize-js).
//
// The service's module is imported as it is. A Workers module (`export default { fetch }`) gets
// each request with an `env` made, per request, of the service's environment variables (strings)
// and a binding per dependency (`env.API.fetch(url | Request)`, reaching that service by name
// through the host, as a Workers service binding does: the URL's host is ignored). A service
// worker (`addEventListener("fetch", …)`) registered itself when its module was imported.
import * as service from "./__PACTOWN_ENTRY__";
import { binding, workerOf } from "./pactown_binding.js";
import { getEnvironment } from "wasi:cli/environment@0.2.10";

// Filled in by pactown: [binding name, service name] for each `depends_on`.
const BINDINGS = __PACTOWN_BINDINGS__;

const worker = workerOf(service, "__PACTOWN_ENTRY__");
if (worker) {
  addEventListener("fetch", (event) => {
    const env = {};
    for (const [k, v] of getEnvironment()) env[k] = v;
    for (const [var_, name] of BINDINGS) env[var_] = binding(name);
    // `waitUntil` work goes on after the response, while the instance's event loop runs.
    const ctx = {
      waitUntil(p) { Promise.resolve(p).catch((e) => console.error(String(e))); },
      passThroughOnException() {},
    };
    event.respondWith(
      (async () => {
        try {
          return await worker.fetch(event.request, env, ctx);
        } catch (e) {
          console.error(e && e.stack ? e.stack : String(e));
          return new Response("internal server error\n", { status: 500 });
        }
      })(),
    );
  });
}
