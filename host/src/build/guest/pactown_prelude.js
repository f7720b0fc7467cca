// Evaluated before the service's module (pactown_worker_reuse.js imports it first): a service
// worker's `addEventListener("fetch", …)` is kept here, for pactown's host to dispatch each
// request to; other event types go to the engine's own `addEventListener`. And each Response
// made from plain bytes keeps them (`knownBody`, below).
export const fetchListeners = [];

const engineAddEventListener = globalThis.addEventListener;
globalThis.addEventListener = function addEventListener(type, listener, options) {
  if (type === "fetch") {
    if (listener && !fetchListeners.includes(listener)) fetchListeners.push(listener);
    return;
  }
  if (typeof engineAddEventListener === "function") {
    return engineAddEventListener.call(globalThis, type, listener, options);
  }
};

// The body each Response was made with, when it was made from bytes pactown can take as they are
// (a string, an ArrayBuffer or a view of one, or none), so that answering a request does not
// read it back through a stream: reading it costs a reused instance more than the rest of a
// small Worker's request (~10 µs of ~50, interpreted). `Response` stays the engine's, seen
// through a Proxy: `instanceof`, subclasses, its statics and responses from `fetch` behave as
// before; a body of any other kind (a stream, a Blob, form data) is read as before.
const NativeResponse = globalThis.Response;
const bodies = new WeakMap();
const utf8 = new TextEncoder();

function made(response, body) {
  if (typeof body === "string") bodies.set(response, body);
  else if (body === null || body === undefined) bodies.set(response, null);
  else if (body instanceof ArrayBuffer) bodies.set(response, new Uint8Array(body.slice(0)));
  else if (ArrayBuffer.isView(body) && body.buffer instanceof ArrayBuffer) {
    // Copied, as the Response copies it: what the Worker writes into it later is not sent.
    const end = body.byteOffset + body.byteLength;
    bodies.set(response, new Uint8Array(body.buffer.slice(body.byteOffset, end)));
  }
  return response;
}

// `Response.json` as the Fetch standard has it: the data as JSON, `application/json` unless the
// init names a content type.
function json(data, init) {
  const body = JSON.stringify(data);
  if (body === undefined) throw new TypeError("Response.json: the data is not serializable to JSON");
  const headers = new Headers(init?.headers);
  if (!headers.has("content-type")) headers.set("content-type", "application/json");
  const response = new NativeResponse(body, {
    status: init?.status,
    statusText: init?.statusText,
    headers,
  });
  return made(response, body);
}

globalThis.Response = new Proxy(NativeResponse, {
  construct(target, args, newTarget) {
    return made(Reflect.construct(target, args, newTarget), args[0]);
  },
  get(target, key, receiver) {
    return key === "json" ? json : Reflect.get(target, key, receiver);
  },
});

// The bytes of `response`'s body if it was made from them (and not read since), at once;
// undefined if it must be read.
export function knownBody(response) {
  const known = bodies.get(response);
  if (known === undefined || response.bodyUsed) return undefined;
  if (known === null) return new Uint8Array(0);
  return typeof known === "string" ? utf8.encode(known) : known;
}

// The bytes of `response`'s body, read whole from its stream (when `knownBody` has none).
export async function bodyOf(response) {
  return response.body ? new Uint8Array(await response.arrayBuffer()) : new Uint8Array(0);
}
