// An MCP server on the official TypeScript SDK for tests/acceptance_mcp.rs: Streamable HTTP with
// stateful sessions (`sessionIdGenerator` set), answers as event streams (not JSON), and NO event
// store, so the server itself cannot resume a stream. Its one tool, `slow_report`, sends a
// progress notification every `intervalMs` for `steps` steps, then its result.
//
// Usage: node server.mjs --port PORT
// Prints one JSON line `{"listening": PORT}` once it accepts connections. `GET /stats` answers
// what each session saw: how many `tools/call` requests reached the tool, how many progress
// notifications it has sent, and what became of each result the SDK's transport was asked to send
// (sent, or the transport's error when the stream it belonged to was gone).
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const { values: args } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(args.port);

/** Session id → its transport. */
const transports = new Map();
/** Session id → { toolCalls, notificationsSent, results: [{ id, outcome }] }. */
const stats = new Map();

function sessionServer(sessionStats) {
    const server = new McpServer({ name: 'sse-relay-acceptance', version: '0.0.0' });
    server.registerTool(
        'slow_report',
        {
            description: 'Reports progress every intervalMs for steps steps, then answers.',
            inputSchema: { steps: z.number().int().positive(), intervalMs: z.number().int().positive() }
        },
        async ({ steps, intervalMs }, extra) => {
            sessionStats.toolCalls += 1;
            sessionStats.toolCallIds.add(extra.requestId);
            const progressToken = extra._meta?.progressToken;
            for (let step = 1; step <= steps; step++) {
                await new Promise(resolve => setTimeout(resolve, intervalMs));
                if (progressToken !== undefined) {
                    await extra.sendNotification({
                        method: 'notifications/progress',
                        params: { progressToken, progress: step, total: steps, message: `step ${step}` }
                    });
                    sessionStats.notificationsSent += 1;
                }
            }
            return { content: [{ type: 'text', text: `done after ${steps} steps` }] };
        }
    );
    return server;
}

/** Records what became of each tools/call result the transport sends. */
function watchResults(transport, sessionStats) {
    const send = transport.send.bind(transport);
    transport.send = async (message, options) => {
        const isToolResult =
            message.id !== undefined &&
            ('result' in message || 'error' in message) &&
            sessionStats.toolCallIds.has(message.id);
        try {
            await send(message, options);
            if (isToolResult) sessionStats.results.push({ id: message.id, outcome: 'sent' });
        } catch (error) {
            if (isToolResult) sessionStats.results.push({ id: message.id, outcome: String(error.message ?? error) });
            throw error;
        }
    };
}

async function readJson(req) {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
}

const listener = http.createServer(async (req, res) => {
    try {
        const url = new URL(req.url, 'http://localhost');
        if (url.pathname === '/stats') {
            const body = {};
            for (const [session, s] of stats) {
                body[session] = { toolCalls: s.toolCalls, notificationsSent: s.notificationsSent, results: s.results };
            }
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
            return;
        }
        if (url.pathname !== '/mcp') {
            res.writeHead(404).end();
            return;
        }
        const session = req.headers['mcp-session-id'];
        const body = req.method === 'POST' ? await readJson(req) : undefined;
        let transport = session ? transports.get(session) : undefined;
        if (!transport && !session && req.method === 'POST' && isInitializeRequest(body)) {
            const sessionStats = { toolCalls: 0, notificationsSent: 0, toolCallIds: new Set(), results: [] };
            transport = new StreamableHTTPServerTransport({
                sessionIdGenerator: () => randomUUID(),
                enableJsonResponse: false,
                onsessioninitialized: id => {
                    transports.set(id, transport);
                    stats.set(id, sessionStats);
                }
            });
            transport.onclose = () => {
                if (transport.sessionId) transports.delete(transport.sessionId);
            };
            watchResults(transport, sessionStats);
            await sessionServer(sessionStats).connect(transport);
        }
        if (!transport) {
            res.writeHead(session ? 404 : 400, { 'content-type': 'application/json' }).end(
                JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'no such session' }, id: null })
            );
            return;
        }
        await transport.handleRequest(req, res, body);
    } catch (error) {
        process.stderr.write(`request failed: ${error.stack ?? error}\n`);
        if (!res.headersSent) res.writeHead(500).end();
    }
});

listener.listen(port, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
});
