// Loads the relay's admin status page in Debian's Chromium (driven by playwright-core; no
// browser download) and reports the figures it shows, twice, a bounded time apart, so the
// test can check that they appear and change as events flow.
//
// Driven by tests/acceptance_status_page.rs:
//   node tests/browser/status_page.mjs --url URL [--chromium PATH]
// Prints one JSON object: {"first": {...}, "later": {...}, "rows": [...], "cluster": ...}.
// Exit status: 0 when it could report, 1 on a harness error (message on stderr).

import { launch, watchdog } from './chromium.mjs';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
if (!args.url) throw new Error('--url is required');

const timer = watchdog('status_page.mjs', 60000);
const browser = await launch(args.chromium);
try {
  const page = await browser.newPage();
  await page.goto(args.url);
  const figures = () => page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    return {
      state: text('state'), subscribers: text('subscribers'), topics: text('topics'),
      eventsInTotal: text('events-in-total'), eventsInRate: text('events-in-rate'),
    };
  });
  // Figures appear once the first stats event arrived.
  await page.waitForFunction(() => document.getElementById('topics').textContent !== '–',
    null, { timeout: 15000 });
  const first = await figures();
  // They change as events flow: wait for the events total to move on.
  await page.waitForFunction((before) =>
    document.getElementById('events-in-total').textContent !== before,
    first.eventsInTotal, { timeout: 15000 });
  const later = await figures();
  const rows = await page.$$eval('#topic-rows tr', (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => td.textContent)));
  // Cluster mode: the peer set as shown (null when the section is hidden, a single relay).
  const cluster = await page.evaluate(() => {
    const section = document.getElementById('cluster');
    if (section.hidden) return null;
    return {
      count: document.getElementById('peers-count').textContent,
      peers: Array.from(document.querySelectorAll('#peers li'), (li) => li.textContent),
    };
  });
  console.log(JSON.stringify({ first, later, rows, cluster }));
} finally {
  clearTimeout(timer);
  await browser.close();
}
