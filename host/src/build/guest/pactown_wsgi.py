"""pactown's WSGI host (PEP 3333) for a Python service built as a component.

The service's `app` is called with a WSGI environ built from each request, and what it returns
is sent back. A fresh instance per request is a wasi:http component (`IncomingHandler`); one
whose instances serve several requests (`instance_reuse`) exports pactown's
`pactown:worker/handler` instead (`Handler`: the request whole in one call, the answer whole in
its result, where wasi:http's resources take a dozen calls). `urllib.request` reaches other
services by name (`http://api/...`) through the host, which applies the service's call policy
(its `depends_on` and `allowed_hosts`).
"""

import email.message
import http.client
import encodings.idna  # noqa: F401 (urllib encodes host names with it; the snapshot must hold it)
import io
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request
import urllib.response

from wit_world import exports
from wit_world.imports import types, outgoing_handler, streams
from componentize_py_types import Ok, Err

from pactown_app import app

CHUNK = 4096
# Headers about one connection: the host sets them, a guest may not (wasi:http refuses them).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te", "trailer"}

_METHODS = {
    "GET": types.Method_Get, "HEAD": types.Method_Head, "POST": types.Method_Post,
    "PUT": types.Method_Put, "DELETE": types.Method_Delete, "CONNECT": types.Method_Connect,
    "OPTIONS": types.Method_Options, "TRACE": types.Method_Trace, "PATCH": types.Method_Patch,
}


def _method_name(m):
    if isinstance(m, types.Method_Other):
        return m.value
    for name, cls in _METHODS.items():
        if isinstance(m, cls):
            return name
    return "GET"


def _read_body(body):
    """All of an incoming body; its stream is dropped before the body (its parent)."""
    out = bytearray()
    with body.stream() as stream:
        while True:
            try:
                out += stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise
    body.__exit__(None, None, None)
    return bytes(out)


def _write_all(stream, data):
    for i in range(0, len(data), CHUNK):
        stream.blocking_write_and_flush(data[i:i + CHUNK])


def _environ(method, path, authority, scheme, headers, body):
    """The WSGI environ of a request; `headers` are (name, latin-1 value) pairs."""
    path, _, query = path.partition("?")
    host, _, port = authority.partition(":")
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": port or ("443" if scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": True,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, v in headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = v
        elif key == "CONTENT_LENGTH":
            continue
        else:
            key = "HTTP_" + key
            env[key] = env[key] + "," + v if key in env else v
    return env


def _answer(environ):
    """Call the app: its status, its headers and its body, whole."""
    started = {}

    def start_response(status, headers, exc_info=None):
        if exc_info and started.get("sent"):
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = headers
        return lambda data: chunks.append(data)

    chunks = []
    try:
        result = app(environ, start_response)
        try:
            for part in result:
                if part:
                    chunks.append(part)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
    except Exception:
        traceback.print_exc()
        started = {"status": 500, "headers": [("content-type", "text/plain")]}
        chunks = [b"internal server error\n"]
    return started.get("status", 500), started.get("headers", []), b"".join(chunks)


if hasattr(exports, "Handler"):

    class Handler(exports.Handler):
        def handle(self, head, body):
            # `METHOD url`, then each header's name and value on lines of their own (the WIT).
            lines = head.split("\n")
            method, _, url = lines[0].partition(" ")
            parts = urllib.parse.urlsplit(url)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            environ = _environ(
                method, path, parts.netloc or "localhost", parts.scheme or "http",
                zip(lines[1::2], lines[2::2]), bytes(body),
            )
            environ["wsgi.run_once"] = False
            status, headers, data = _answer(environ)
            # The head as UTF-8 (the host drops the headers about one connection), a NUL byte,
            # the body.
            text = "".join(f"\n{k.lower()}\n{v}" for k, v in headers)
            return f"{status}{text}".encode("utf-8") + b"\0" + data

        def settle(self):
            pass
else:
    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request, response_out):
            body = _read_body(request.consume())
            scheme = "https" if isinstance(request.scheme(), types.Scheme_Https) else "http"
            environ = _environ(
                _method_name(request.method()), request.path_with_query() or "/",
                request.authority() or "localhost", scheme,
                [(n, v.decode("latin-1")) for n, v in request.headers().entries()], body,
            )
            status, headers, data = _answer(environ)
            fields = types.Fields.from_list(
                [(k.lower(), v.encode("latin-1")) for k, v in headers if k.lower() not in HOP_BY_HOP]
            )
            response = types.OutgoingResponse(fields)
            response.set_status_code(status)
            out = response.body()
            types.ResponseOutparam.set(response_out, Ok(response))
            stream = out.write()
            _write_all(stream, data)
            stream.__exit__(None, None, None)
            types.OutgoingBody.finish(out, None)


def fetch(url, method="GET", headers=(), body=b""):
    """Send one HTTP request through the host; returns (status, headers, body)."""
    parsed = urllib.parse.urlsplit(url)
    req = types.OutgoingRequest(types.Fields.from_list(
        [(k.lower(), v.encode("latin-1")) for k, v in headers if k.lower() not in HOP_BY_HOP]))
    req.set_method(_METHODS[method.upper()]() if method.upper() in _METHODS else types.Method_Other(method))
    req.set_scheme(types.Scheme_Https() if parsed.scheme == "https" else types.Scheme_Http())
    req.set_authority(parsed.netloc)
    req.set_path_with_query(parsed.path + ("?" + parsed.query if parsed.query else "") or "/")
    out = req.body()
    future = outgoing_handler.handle(req, None)
    if body:
        stream = out.write()
        _write_all(stream, body)
        stream.__exit__(None, None, None)
    types.OutgoingBody.finish(out, None)
    while True:
        got = future.get()
        if got is not None:
            break
        future.subscribe().block()
    resp = got.value
    if isinstance(resp, Err):
        raise OSError(f"{url}: {resp.value}")
    resp = resp.value
    status, hdrs = resp.status(), resp.headers().entries()
    data = _read_body(resp.consume())
    return status, [(k, v.decode("latin-1")) for k, v in hdrs], data


class _Handler(urllib.request.BaseHandler):
    # Before urllib's own handlers, which would open a socket (a component has none).
    handler_order = 100

    def _open(self, req):
        status, headers, data = fetch(
            req.full_url, req.get_method(), req.header_items(), req.data or b""
        )
        msg = email.message.Message()
        for k, v in headers:
            msg[k] = v
        resp = urllib.response.addinfourl(io.BytesIO(data), msg, req.full_url, status)
        # What urllib's error processor reads: the reason phrase (4xx/5xx become HTTPError).
        resp.msg = http.client.responses.get(status, "")
        return resp

    http_open = _open
    https_open = _open


urllib.request.install_opener(urllib.request.build_opener(_Handler))
