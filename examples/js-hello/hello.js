// The smallest useful JavaScript component: a greeting for every request,
// on the fetch-event API that ComponentizeJS (StarlingMonkey) provides.
//
// Built by `ops/build-guests`:
//   componentize-js hello.js --wit WIT --world-name proxy -o js-hello.wasm
// where WIT is the wasi:http 0.2 proxy world at 0.2.10, the version
// StarlingMonkey's engine is built for; then `edgectl deploy APP js-hello.wasm`.

const GREETING = 'Hello from the edge (JavaScript)!\n';

addEventListener('fetch', (event) => {
  event.respondWith(
    new Response(GREETING, {
      headers: { 'content-type': 'text/plain; charset=utf-8' },
    }),
  );
});
