// A small JSON API in JavaScript, with the same routes and answers as
// `examples/py-api`:
//
//   GET  /              {"service": "js-api", "routes": [...]}
//   GET  /hello/NAME    {"hello": "NAME"}        (percent-decoded)
//   POST /echo          {"received": BODY}       (BODY: the request's JSON)
//   otherwise           404 / 405 / 400 / 413 with {"error": "..."}
//
// Built by `ops/build-guests` with ComponentizeJS (see `examples/js-hello`).

const SERVICE = 'js-api';
const ROUTES = ['GET /', 'GET /hello/NAME', 'POST /echo'];
const MAX_BODY = 64 << 10;

function json(status, document) {
  return new Response(JSON.stringify(document) + '\n', {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

async function route(request) {
  const path = new URL(request.url).pathname;
  const method = request.method;
  if (path === '/') {
    if (method !== 'GET') return json(405, { error: 'method not allowed' });
    return json(200, { service: SERVICE, routes: ROUTES });
  }
  const hello = path.match(/^\/hello\/([^/]+)$/);
  if (hello) {
    if (method !== 'GET') return json(405, { error: 'method not allowed' });
    return json(200, { hello: decodeURIComponent(hello[1]) });
  }
  if (path === '/echo') {
    if (method !== 'POST') return json(405, { error: 'method not allowed' });
    const raw = await request.text();
    if (raw.length > MAX_BODY) return json(413, { error: `body over ${MAX_BODY} bytes` });
    try {
      return json(200, { received: JSON.parse(raw) });
    } catch {
      return json(400, { error: 'invalid JSON body' });
    }
  }
  return json(404, { error: 'not found' });
}

addEventListener('fetch', (event) => {
  event.respondWith(
    route(event.request).catch((err) => {
      console.error(`js-api: ${err}`);
      return json(500, { error: 'internal error' });
    }),
  );
});
