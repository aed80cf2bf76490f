// A chat page in Debian's Chromium (driven by playwright-core; no browser download) that
// starts an LLM answer through the relay with fetch, is reloaded after 100 chunks, and follows
// the rest with EventSource from the resume URL; reports what it saw.
//
// Driven by tests/acceptance_request_streams.rs:
//   node tests/browser/resume_stream.mjs --page URL --relay URL [--read 100]
//        [--model NAME] [--wait-ms MS] [--chromium PATH]
// --page is the chat app's page (another origin than the relay: every request to the relay is
// a CORS request); --relay is the relay's base URL (https://127.0.0.1:PORT).
//
// Protocol on stdout, one JSON object per line:
//   {"phase":"started",...}  after the page read --read chunks of the POST's answer (the
//                            resume URL and the last id are then in the page's localStorage)
//   {"phase":"result",...}   after the reloaded page's EventSource closed, or --wait-ms passed
// Exit status: 0 when it could report, 1 on a harness error (message on stderr).
// A watchdog ends the script (and with it the browser) whatever happens.

import { launch } from './chromium.mjs';

const args = parseArgs(process.argv.slice(2));
const read = Number(args.read ?? 100);
const waitMs = Number(args['wait-ms'] ?? 30000);

const watchdog = setTimeout(() => {
  console.error('resume_stream.mjs: watchdog expired');
  process.exit(1);
}, 2 * waitMs + 60000);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['page', 'relay']) {
    if (!out[required]) throw new Error(`--${required} is required`);
  }
  return out;
}

// In the page: POSTs the chat request, reads the answer's event stream itself until `read`
// chunks (events with data) arrived, keeps the resume URL and the last id in localStorage (as a
// chat app does, to survive a reload) and returns what it saw. The answer is left open: the
// reload is what ends it.
async function startChat({ relay, read, model, waitMs }) {
  const response = await fetch(`${relay}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      stream: true,
      messages: [{ role: 'user', content: 'Count to five hundred.' }],
    }),
  });
  const location = response.headers.get('content-location');
  const started = {
    status: response.status,
    contentType: response.headers.get('content-type'),
    contentLocation: location,
    chunks: [],
    ids: [],
  };
  if (!response.ok || !location) return started;
  const resume = new URL(location, response.url).href;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = { id: null, data: [] };
  const deadline = Date.now() + waitMs;
  // The SSE parsing of the HTML standard (§9.2.6), enough for one stream: lines end with CRLF,
  // LF or CR; a blank line dispatches an event that has data.
  while (started.chunks.length < read && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let match;
    while (started.chunks.length < read && (match = /\r\n|\n|\r(?!$)/.exec(buffer))) {
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      if (line === '') {
        if (event.data.length > 0) {
          started.chunks.push(event.data.join('\n'));
          started.ids.push(event.id);
          localStorage.setItem(
            'chat',
            JSON.stringify({ resume, lastId: event.id, chunks: started.chunks.length }),
          );
        }
        event = { id: event.id, data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') event.data.push(value);
      else if (field === 'id' && !value.includes('\0')) event.id = value;
    }
  }
  started.resume = resume;
  return started;
}

// In the reloaded page: follows the resume URL kept in localStorage with EventSource from the
// last id (`lastEventId` query: EventSource sets no header on its first request) until the
// EventSource is CLOSED (the relay's 204 after the end), or `waitMs` passed.
function resumeChat({ waitMs }) {
  const kept = JSON.parse(localStorage.getItem('chat') ?? 'null');
  if (!kept) return Promise.resolve({ kept: null });
  const url = new URL(kept.resume);
  url.searchParams.set('lastEventId', kept.lastId);
  return new Promise((resolve) => {
    const state = { kept, url: url.href, opens: 0, errors: [], messages: [], ids: [] };
    const source = new EventSource(url.href);
    const timer = setTimeout(() => {
      state.timedOut = true;
      finish();
    }, waitMs);
    function finish() {
      clearTimeout(timer);
      state.readyState = source.readyState;
      source.close();
      resolve(state);
    }
    source.onopen = () => state.opens++;
    source.onmessage = (event) => {
      state.messages.push(event.data);
      state.ids.push(event.lastEventId);
    };
    source.onerror = () => {
      state.errors.push({ readyState: source.readyState, afterMessages: state.messages.length });
      if (source.readyState === EventSource.CLOSED) finish();
    };
  });
}

async function main() {
  const browser = await launch(args.chromium, ['--ignore-certificate-errors']);
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    // Every request to the relay and its answer, as Chromium's network stack saw them (the CDP
    // session stays with the page across the reload); `lastEventId` is the `Last-Event-ID`
    // header Chromium sent (an EventSource sets it on a reconnect).
    const requests = new Map();
    const extras = new Map();
    function extra(requestId) {
      if (!extras.has(requestId)) extras.set(requestId, {});
      return extras.get(requestId);
    }
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.requestWillBeSent', ({ requestId, type, request }) => {
      if (request.url.startsWith(args.relay)) {
        requests.set(requestId, { type, method: request.method, url: request.url });
      }
    });
    cdp.on('Network.requestWillBeSentExtraInfo', ({ requestId, headers }) => {
      const found = Object.entries(headers).find(([k]) => k.toLowerCase() === 'last-event-id');
      extra(requestId).lastEventId = found ? found[1] : null;
    });
    cdp.on('Network.responseReceived', ({ requestId, response }) => {
      Object.assign(extra(requestId), { status: response.status, protocol: response.protocol });
    });
    cdp.on('Network.loadingFailed', ({ requestId, errorText }) => {
      extra(requestId).failed = errorText;
    });
    const report = () =>
      [...requests].map(([id, request]) => ({ ...request, ...(extras.get(id) ?? {}) }));
    // Every request got its answer (or failed), and each EventSource's headers are known.
    const settled = () =>
      report().every(
        (r) =>
          (r.status !== undefined || r.failed !== undefined) &&
          (r.type !== 'EventSource' || r.lastEventId !== undefined),
      );

    await page.goto(args.page);
    const started = await page.evaluate(startChat, {
      relay: args.relay,
      read,
      model: args.model ?? 'relay-test',
      waitMs,
    });
    console.log(JSON.stringify({ phase: 'started', ...started }));

    // A real reload: the document and its open fetch go; localStorage stays.
    const navigations = [];
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
    await page.reload({ waitUntil: 'load' });
    const resumed = await page.evaluate(resumeChat, { waitMs });
    // CDP events may trail the page's own: wait (bounded) until every request is settled.
    const settleDeadline = Date.now() + 10000;
    while (!settled() && Date.now() < settleDeadline) await sleep(50);
    console.log(
      JSON.stringify({
        phase: 'result',
        reloaded: navigations.length,
        ...resumed,
        requests: report(),
        browser: browser.version(),
      }),
    );
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
    console.error(`resume_stream.mjs: ${error?.stack ?? error}`);
    process.exit(1);
  });
