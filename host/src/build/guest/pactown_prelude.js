// Evaluated before the service's module (pactown_worker.js imports it first): a service worker's
// `addEventListener("fetch", …)` is kept here, for pactown's host to dispatch each request to.
// Other event types go to the engine's own `addEventListener`.
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
