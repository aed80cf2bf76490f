// Opens N EventSources from one page of Debian's Chromium (driven by playwright-core; no
// browser download) and reports how many opened and how many received the expected messages.
//
// Driven by tests/acceptance_browser.rs:
//   node tests/browser/eventsource.mjs --page URL --url URL --count N
//        (--expect JSON_ARRAY | --expect-file PATH) [--open-wait-ms MS] [--receive-wait-ms MS]
//        [--chromium PATH]
// (--expect-file holds the JSON array, for messages too large for a command-line argument.)
//
// Protocol on stdout, one JSON object per line:
//   {"phase":"open",...}    once every source opened, or --open-wait-ms passed;
//                           the script then waits for a line "published" on stdin
//   {"phase":"result",...}  after every open source got the expected messages, or
//                           --receive-wait-ms passed
// Exit status: 0 when it could report, 1 on a harness error (message on stderr).
// A watchdog ends the script (and with it the browser) whatever happens.

import { launch } from './chromium.mjs';
import readline from 'node:readline';
import { readFileSync } from 'node:fs';

const args = parseArgs(process.argv.slice(2));
const count = Number(args.count ?? 30);
const expected = JSON.parse(
  args['expect-file'] ? readFileSync(args['expect-file'], 'utf8') : (args.expect ?? '[]'),
);
const openWaitMs = Number(args['open-wait-ms'] ?? 10000);
const receiveWaitMs = Number(args['receive-wait-ms'] ?? 15000);
const publishWaitMs = 30000;

const watchdog = setTimeout(() => {
  console.error('eventsource.mjs: watchdog expired');
  process.exit(1);
}, openWaitMs + publishWaitMs + receiveWaitMs + 60000);

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['page', 'url']) {
    if (!out[required]) throw new Error(`--${required} is required`);
  }
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves true when stdin says "published", false on timeout or end of input.
function waitForPublished(timeoutMs) {
  return new Promise((resolve) => {
    const lines = readline.createInterface({ input: process.stdin });
    const timer = setTimeout(() => finish(false), timeoutMs);
    let done = false;
    function finish(value) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(value);
      lines.close(); // emits 'close' at once: already answered
    }
    lines.on('line', (line) => line.trim() === 'published' && finish(true));
    lines.on('close', () => finish(false));
  });
}

async function main() {
  const browser = await launch(args.chromium, ['--ignore-certificate-errors']);
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    // The protocol each EventSource response came over, as Chromium's network stack saw it.
    const protocols = {};
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', ({ response }) => {
      if (response.url.startsWith(args.url)) {
        const p = response.protocol ?? 'unknown';
        protocols[p] = (protocols[p] ?? 0) + 1;
      }
    });
    await page.goto(args.page);
    await page.evaluate(
      ({ url, count }) => {
        window.sse = [];
        for (let i = 0; i < count; i++) {
          const source = new EventSource(url);
          const state = { source, opened: false, errors: 0, messages: [] };
          source.onopen = () => (state.opened = true);
          source.onerror = () => state.errors++;
          source.onmessage = (event) => state.messages.push(event.data);
          window.sse.push(state);
        }
      },
      { url: args.url, count },
    );
    const snapshot = (expected) =>
      page.evaluate((expected) => {
        const want = JSON.stringify(expected);
        return {
          open: window.sse.filter((s) => s.opened).length,
          connecting: window.sse.filter((s) => s.source.readyState === 0).length,
          closed: window.sse.filter((s) => s.source.readyState === 2).length,
          errors: window.sse.reduce((n, s) => n + s.errors, 0),
          received_all: window.sse.filter((s) => JSON.stringify(s.messages) === want).length,
          received_any: window.sse.filter((s) => s.messages.length > 0).length,
        };
      }, expected);

    const openDeadline = Date.now() + openWaitMs;
    let state = await snapshot(expected);
    while (state.open < count && Date.now() < openDeadline) {
      await sleep(100);
      state = await snapshot(expected);
    }
    console.log(JSON.stringify({ phase: 'open', url: args.url, count, ...state }));

    const published = await waitForPublished(publishWaitMs);
    const receiveDeadline = Date.now() + receiveWaitMs;
    state = await snapshot(expected);
    while (published && state.received_all < state.open && Date.now() < receiveDeadline) {
      await sleep(100);
      state = await snapshot(expected);
    }
    const result = {
      phase: 'result',
      url: args.url,
      count,
      published,
      ...state,
      h2_responses: protocols.h2 ?? 0,
      http1_responses: protocols['http/1.1'] ?? 0,
      protocols,
      browser: browser.version(),
    };
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
  }
}

main()
  .then(() => {
    clearTimeout(watchdog);
    process.exit(0);
  })
  .catch((error) => {
    console.error(`eventsource.mjs: ${error?.stack ?? error}`);
    process.exit(1);
  });
