// What the browser scripts share: Debian's Chromium launched headless through playwright-core
// (no browser download), and a watchdog that ends a script that hangs.

import { chromium } from 'playwright-core';

// Launches the browser at `executablePath` (default: Debian's /usr/bin/chromium) with `extra`
// command-line flags besides the shared ones. launch() gives the browser a fresh temporary
// user-data-dir, removed on close.
export function launch(executablePath, extra = []) {
  return chromium.launch({
    executablePath: executablePath ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extra],
  });
}

// Ends the process with status 1 after `ms` unless cleared (clearTimeout on the result).
export function watchdog(name, ms) {
  return setTimeout(() => {
    console.error(`${name}: watchdog expired`);
    process.exit(1);
  }, ms);
}
