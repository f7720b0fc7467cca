// Shared by pactown's two Worker hosts (pactown_worker.js, pactown_worker_reuse.js).

// A Workers service binding to the service `name`: `fetch(url | Request)` reaches it by name
// through the host; the URL's host is ignored.
export function binding(name) {
  return {
    fetch(input, init) {
      // A Request, an absolute URL, or a path (`/users`): all reach `name`.
      const req = input instanceof Request
        ? new Request(input, init)
        : new Request(new URL(String(input), `http://${name}/`).toString(), init);
      const url = new URL(req.url);
      url.host = name;
      url.protocol = "http:";
      return fetch(new Request(url.toString(), req));
    },
  };
}

// The module's Worker (its default export), checked; undefined for a service worker.
export function workerOf(service, entry) {
  const worker = service.default;
  if (worker !== undefined && (worker === null || typeof worker.fetch !== "function")) {
    throw new TypeError(
      `${entry}: the default export has no fetch(request, env, ctx) method; ` +
        "export a Worker (`export default { async fetch(request, env, ctx) { … } }`) or an app with one",
    );
  }
  return worker;
}
