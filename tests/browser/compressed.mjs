// EventSources in one page of Debian's Chromium (driven by playwright-core; no browser
// download), each to a URL given, recording every event they dispatch and, from Chromium's
// network stack (CDP), each EventSource response's protocol and Content-Encoding and whether
// its body ended cleanly or failed (e.g. net::ERR_CONTENT_DECODING_FAILED).
//
// Driven by tests/acceptance_compression_clients.rs:
//   node tests/browser/compressed.mjs --page URL --urls JSON_ARRAY [--chromium PATH]
//
// Chromium negotiates the coding by itself (its own Accept-Encoding). Commands on stdin, one
// a line; answers on stdout, one JSON object a line:
//   (start)    {"phase":"open",...}   once every source is open (or 15 s passed)
//   wait N     {"phase":"got",...}    once every source dispatched N events (or 15 s passed)
//   end        {"phase":"result",...} once every source is CLOSED (or 20 s passed); then exit
// Exit status: 0 when it could report, 1 on a harness error (message on stderr).

import { launch, watchdog } from './chromium.mjs';
import readline from 'node:readline';

const args = parseArgs(process.argv.slice(2));
const urls = JSON.parse(args.urls);
const timer = watchdog('compressed.mjs', 180000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['page', 'urls']) {
    if (!out[required]) throw new Error(`--${required} is required`);
  }
  return out;
}

// Polls `probe` (async) every 50 ms until it is true or `ms` passed; its last value.
async function until(probe, ms) {
  const deadline = Date.now() + ms;
  let value = await probe();
  while (!value && Date.now() < deadline) {
    await sleep(50);
    value = await probe();
  }
  return value;
}

// Records, per EventSource request, what Chromium's network stack saw.
function watchNetwork(cdp) {
  const requests = new Map();
  cdp.on('Network.requestWillBeSent', ({ requestId, request, type }) => {
    if (type === 'EventSource') {
      requests.set(requestId, {
        url: request.url,
        status: null,
        protocol: null,
        contentEncoding: null,
        finished: false,
        failed: null,
      });
    }
  });
  // The headers as sent come in an ExtraInfo event, which CDP may deliver before or after
  // requestWillBeSent: kept apart and joined when the test asks.
  const sent = new Map();
  cdp.on('Network.requestWillBeSentExtraInfo', ({ requestId, headers }) => {
    const name = Object.keys(headers).find((h) => h.toLowerCase() === 'accept-encoding');
    sent.set(requestId, name ? headers[name] : null);
  });
  cdp.on('Network.responseReceived', ({ requestId, response }) => {
    const r = requests.get(requestId);
    if (r) {
      r.status = response.status;
      r.protocol = response.protocol ?? null;
      const name = Object.keys(response.headers).find((h) => h.toLowerCase() === 'content-encoding');
      r.contentEncoding = name ? response.headers[name] : null;
    }
  });
  cdp.on('Network.loadingFinished', ({ requestId }) => {
    const r = requests.get(requestId);
    if (r) r.finished = true;
  });
  cdp.on('Network.loadingFailed', ({ requestId, errorText }) => {
    const r = requests.get(requestId);
    if (r) r.failed = errorText;
  });
  return () =>
    [...requests.entries()].map(([id, r]) => ({ ...r, acceptEncoding: sent.get(id) ?? null }));
}

// In the page: one EventSource per URL, recording each dispatched event (messages, `tick`
// events, the relay's gap signal) and each error with the readyState it left.
function openSources(urls) {
  window.sources = urls.map((url) => {
    const state = { url, source: new EventSource(url), opened: 0, events: [], errors: [] };
    const record = (event) =>
      state.events.push({ type: event.type, data: event.data, lastEventId: event.lastEventId });
    for (const type of ['message', 'tick', 'sse-relay-gap']) {
      state.source.addEventListener(type, record);
    }
    state.source.onopen = () => state.opened++;
    state.source.onerror = () => state.errors.push(state.source.readyState);
    return state;
  });
}

function snapshot() {
  return window.sources.map((s) => ({
    url: s.url,
    opened: s.opened,
    readyState: s.source.readyState,
    errors: s.errors,
    events: s.events,
  }));
}

async function main() {
  const browser = await launch(args.chromium, ['--ignore-certificate-errors']);
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const requests = watchNetwork(cdp);
    await page.goto(args.page);
    await page.evaluate(openSources, urls);
    const state = () => page.evaluate(snapshot);
    await until(async () => (await state()).every((s) => s.opened > 0), 15000);
    console.log(JSON.stringify({ phase: 'open', sources: await state() }));

    const lines = readline.createInterface({ input: process.stdin });
    for await (const line of lines) {
      const [command, arg] = line.trim().split(' ');
      if (command === 'wait') {
        const n = Number(arg);
        await until(async () => (await state()).every((s) => s.events.length >= n), 15000);
        const counts = (await state()).map((s) => s.events.length);
        console.log(JSON.stringify({ phase: 'got', n, counts }));
      } else if (command === 'end') {
        await until(async () => (await state()).every((s) => s.readyState === 2), 20000);
        const result = {
          phase: 'result',
          sources: await state(),
          requests: requests(),
          browser: browser.version(),
        };
        console.log(JSON.stringify(result));
        break;
      }
    }
    lines.close();
  } finally {
    await browser.close();
  }
}

main()
  .then(() => {
    clearTimeout(timer);
    process.exit(0);
  })
  .catch((error) => {
    console.error(`compressed.mjs: ${error?.stack ?? error}`);
    process.exit(1);
  });
