// An MCP client on the official TypeScript SDK for tests/acceptance_mcp.rs: connects with
// StreamableHTTPClientTransport, calls the server's `slow_report` tool with a progress callback,
// and cuts the tools/call answer's connection after `--cut-after` progress notifications, as a
// network cut looks to the SDK (the body errors with undici's `TypeError: terminated` and the
// connection underneath is dropped). What happens next is the SDK's own: when its stream carried
// event ids it reconnects with `GET` + `Last-Event-ID` + `Mcp-Session-Id` (its resumption
// token), else it cannot. The transport's fetch is wrapped only to see and cut; it sends every
// request as the SDK made it.
//
// A resume is held back (not altered) until the server has sent two more notifications than the
// client saw, so some reach the client only through a replay, and, with `--relay-metrics` (the
// relay's admin /metrics), until the relay has seen its viewer go.
//
// Usage: node client.mjs --url URL --stats URL --steps N --interval-ms MS --cut-after K
//        [--relay-metrics URL]
// Prints one JSON report: the progress seen, every message the transport delivered after
// connecting, the result or the error, the resumption tokens, every HTTP request the transport
// made, and the server's /stats for this session once the server has settled the tool's result.
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

const { values: args } = parseArgs({
    options: {
        url: { type: 'string' },
        stats: { type: 'string' },
        steps: { type: 'string' },
        'interval-ms': { type: 'string' },
        'cut-after': { type: 'string' },
        'relay-metrics': { type: 'string' }
    }
});
const steps = Number(args.steps);
const intervalMs = Number(args['interval-ms']);
const cutAfter = Number(args['cut-after']);
/** How long any one wait of this script may take. */
const WAIT_MS = 30_000;

/** The resumption tokens the SDK handed out (`onresumptiontoken`), in order. */
const tokens = [];
/** Every HTTP request the transport made, in order, and what became of its answer's body. */
const requests = [];
/** Cuts the tools/call answer once armed (set when that answer arrives). */
let cut = null;

/** Passes `response`'s body through unchanged, noting in `entry` how it ended; returns a cutter. */
function watched(response, entry) {
    const source = response.body.getReader();
    let controller;
    const body = new ReadableStream({
        start(c) {
            controller = c;
        },
        async pull(c) {
            try {
                const { value, done } = await source.read();
                if (done) {
                    entry.body ??= 'ended';
                    c.close();
                } else {
                    c.enqueue(value);
                }
            } catch (error) {
                entry.body ??= `failed: ${error}`;
                c.error(error);
            }
        },
        cancel(reason) {
            entry.body ??= 'cancelled';
            return source.cancel(reason);
        }
    });
    const cutter = () => {
        entry.body = 'cut';
        // What undici gives a reader when the socket goes away mid-body.
        controller.error(new TypeError('terminated'));
        source.cancel().catch(() => {});
    };
    return { response: new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers }), cutter };
}

async function watchingFetch(url, init = {}) {
    const headers = new Headers(init.headers);
    let rpc;
    if (typeof init.body === 'string') {
        const message = JSON.parse(init.body);
        rpc = message.method ?? 'response';
    }
    const entry = {
        method: init.method ?? 'GET',
        rpc,
        sessionId: headers.get('mcp-session-id'),
        lastEventId: headers.get('last-event-id')
    };
    requests.push(entry);
    if (entry.method === 'GET' && entry.lastEventId !== null) {
        entry.lastTokenGiven = tokens.at(-1) ?? null;
        entry.heldUntil = await heldResume();
    }
    const response = await fetch(url, init);
    entry.status = response.status;
    entry.contentType = response.headers.get('content-type');
    entry.contentLocation = response.headers.get('content-location');
    if (!response.body || !entry.contentType?.startsWith('text/event-stream')) {
        entry.body = 'not an event stream';
        return response;
    }
    const { response: passed, cutter } = watched(response, entry);
    if (entry.method === 'POST' && rpc === 'tools/call' && cut === null) cut = cutter;
    return passed;
}

/** Polls `condition` every 50 ms, failing after WAIT_MS. */
async function until(what, condition) {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
        const value = await condition();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise(resolve => setTimeout(resolve, 50));
    }
}

async function serverStats(session) {
    const response = await fetch(args.stats);
    return (await response.json())[session];
}

/** The relay's `sse_relay_request_stream_subscribers`: viewers of its request streams. */
async function relayViewers() {
    const text = await (await fetch(args['relay-metrics'])).text();
    const line = text.split('\n').find(l => l.startsWith('sse_relay_request_stream_subscribers '));
    if (line === undefined) throw new Error('no sse_relay_request_stream_subscribers in the relay metrics');
    return Number(line.split(' ')[1]);
}

/** Waits until a resume may go out; what the server and the relay had done by then. */
async function heldResume() {
    const notificationsSent = await until('the server to send on past the cut', async () => {
        const sent = (await serverStats(transport.sessionId))?.notificationsSent ?? 0;
        return sent >= cutAfter + 2 ? sent : null;
    });
    if (args['relay-metrics'] === undefined) return { notificationsSent };
    await until('the relay to see its viewer go', async () => (await relayViewers()) === 0);
    return { notificationsSent, relayViewers: 0 };
}

const transport = new StreamableHTTPClientTransport(new URL(args.url), {
    fetch: watchingFetch,
    reconnectionOptions: {
        initialReconnectionDelay: 500,
        maxReconnectionDelay: 2000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 2
    }
});
const transportErrors = [];
transport.onerror = error => transportErrors.push(String(error.message ?? error));
const client = new Client({ name: 'sse-relay-acceptance-client', version: '0.0.0' });
await client.connect(transport);
const session = transport.sessionId;

/** Every message the transport delivered to the client, summarized. */
const messages = [];
const deliver = transport.onmessage;
transport.onmessage = (message, extra) => {
    if (message.method === 'notifications/progress') {
        messages.push({ progress: message.params.progress });
    } else if (message.method !== undefined) {
        messages.push({ method: message.method });
    } else {
        messages.push({ response: message.id, error: message.error?.message });
    }
    deliver(message, extra);
};

const progress = [];
let tokensAtCut = null;
let progressAtCut = null;
const call = client
    .callTool({ name: 'slow_report', arguments: { steps, intervalMs } }, CallToolResultSchema, {
        timeout: WAIT_MS,
        onprogress: ({ progress: step }) => {
            progress.push(step);
            if (progress.length === cutAfter) {
                progressAtCut = [...progress];
                tokensAtCut = [...tokens];
                cut();
            }
        },
        onresumptiontoken: token => tokens.push(token)
    })
    .then(
        result => ({ result: result.content.map(c => c.text).join('') }),
        error => ({ error: String(error.message ?? error) })
    );

// The server settles the tool's result either way: sent into a stream, or refused because the
// stream it belonged to is gone. Then nothing more can come for this call but what a resume gets.
await until('the cut', () => progressAtCut !== null);
const server = await until('the server to settle the result', async () => {
    const s = await serverStats(session);
    return s?.results.length ? s : null;
});
const resumes = () => requests.filter(r => r.method === 'GET' && r.lastEventId !== null);
let outcome;
if (tokensAtCut.length > 0) {
    // Resumable: the SDK reconnects by itself; wait for the call and the resumed stream's end.
    outcome = await call;
    await until('the resumed stream to end', () => resumes().some(r => r.body !== undefined));
} else {
    // Nothing to resume from: the SDK has no token, and made no resume request. The call can only
    // end with the client.
    outcome = { pendingAfterServerSettled: resumes().length === 0 };
}
await client.close();
const settled = await call;
process.stdout.write(
    `${JSON.stringify({
        session,
        progress,
        progressAtCut,
        tokensAtCut,
        tokens,
        messages,
        ...outcome,
        ...(outcome.result === undefined ? { error: settled.error } : {}),
        requests,
        transportErrors,
        server
    })}\n`
);
