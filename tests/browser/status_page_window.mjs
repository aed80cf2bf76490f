// The status page as an operator uses it, in Debian's Chromium (driven by playwright-core; no
// browser download), on a relay whose admin listener has a token: without the token the page
// asks for it and the data endpoints answer 401; with it, the charts fill a point a second,
// a per-user topic cannot be tailed, and the tail of a topic shows the events published to
// it. Ends with a screenshot of the page.
//
// Driven by tests/acceptance_status_page.rs, which publishes once the page opened the tail:
//   node tests/browser/status_page_window.mjs --url URL --token TOKEN --topic KEY
//     --private KEY --last-id ID --burst N [--screenshot PATH] [--chromium PATH]
// KEY: a topic key as /topics shows it. ID: the id of the last event published to --topic.
// N: deliveries per second the deliveries chart must reach (the test's burst).
// Prints one JSON object (see `report` below). Exit status: 0 when it could report, 1 on a
// harness error or a wait that timed out (message on stderr).

import { launch, watchdog } from './chromium.mjs';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
for (const required of ['url', 'token', 'topic', 'private', 'last-id', 'burst']) {
  if (!args[required]) throw new Error(`--${required} is required`);
}

const timer = watchdog('status_page_window.mjs', 80000);
const browser = await launch(args.chromium);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(args.url);

  // Without the token: the page asks for it, and every data endpoint answers 401.
  await page.waitForSelector('#login', { state: 'visible', timeout: 15000 });
  const login = await page.evaluate(async () => {
    const statuses = {};
    for (const path of ['topics', 'stats', 'history', 'history/stream', 'tail?topic=x']) {
      const controller = new AbortController();
      const response = await fetch(path, { signal: controller.signal });
      statuses[path] = response.status;
      controller.abort();
    }
    return {
      asked: !document.getElementById('login').hidden,
      mainHidden: document.getElementById('main').hidden,
      statuses,
    };
  });

  // With the token: the charts fill, a point a second.
  await page.fill('#token', args.token);
  await page.click('#login button[type=submit]');
  await page.waitForFunction(() => Number(document.getElementById('charts').dataset.samples) >= 4,
    null, { timeout: 20000 });
  const charts = await page.evaluate(() => {
    const d = document.getElementById('charts').dataset;
    const deliveries = document.getElementById('chart-deliveries');
    return {
      samples: Number(d.samples), firstMs: Number(d.firstMs), lastMs: Number(d.lastMs),
      figures: document.querySelectorAll('#charts figure').length,
      deliveriesPoints: Number(deliveries.dataset.points),
      deliveriesMaxBefore: Number(deliveries.dataset.max),
      polylinePoints: deliveries.querySelector('polyline').getAttribute('points')
        .split(' ').filter(Boolean).length,
    };
  });

  // The per-user topic: listed, but no tail; asked directly, the relay refuses.
  await page.waitForFunction(() => document.querySelectorAll('#topic-rows tr').length >= 2,
    null, { timeout: 15000 });
  const personal = await page.evaluate(async (key) => {
    const buttons = Array.from(document.querySelectorAll('#topic-rows button'),
      (b) => b.dataset.key);
    const row = Array.from(document.querySelectorAll('#topic-rows tr'),
      (tr) => Array.from(tr.children, (td) => td.textContent))
      .find((cells) => cells[cells.length - 1] === 'private');
    const token = sessionStorage.getItem('sse-relay-admin-token');
    const response = await fetch('tail?topic=' + encodeURIComponent(key),
      { headers: { Authorization: 'Bearer ' + token } });
    return { tailButtons: buttons, row, tailStatus: response.status, tokenKept: token !== null };
  }, args.private);

  // The tail of the topic: the ring's recent events, then those the test publishes now.
  await page.evaluate((key) => {
    const button = Array.from(document.querySelectorAll('#topic-rows button'))
      .find((b) => b.dataset.key === key);
    if (!button) throw new Error('no tail button for ' + key);
    button.click();
  }, args.topic);
  await page.waitForFunction((id) => Array.from(document.querySelectorAll('#tail-rows tr'))
    .some((tr) => tr.firstChild.textContent === id), args['last-id'], { timeout: 20000 });
  const tailRows = await page.$$eval('#tail-rows tr', (trs) =>
    trs.map((tr) => Array.from(tr.children, (td) => td.textContent)));
  // The filter by event type hides the others.
  await page.fill('#tail-filter', 'price');
  const filtered = await page.$$eval('#tail-rows tr', (trs) =>
    trs.filter((tr) => !tr.hidden).map((tr) => tr.children[1].textContent));
  await page.fill('#tail-filter', '');

  // The burst shows in the deliveries chart.
  await page.waitForFunction((n) =>
    Number(document.getElementById('chart-deliveries').dataset.max) >= n,
  Number(args.burst), { timeout: 20000 });
  const deliveriesMax = await page.evaluate(() =>
    Number(document.getElementById('chart-deliveries').dataset.max));

  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  const report = { login, charts, personal, tailRows, filtered, deliveriesMax };
  console.log(JSON.stringify(report));
} finally {
  clearTimeout(timer);
  await browser.close();
}
