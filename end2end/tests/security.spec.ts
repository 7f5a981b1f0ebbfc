import { test, expect } from '@playwright/test';

// The room page carries its token in the address: it must not be framed by other sites, leak
// through the Referer, or be driven by another site's scripts. And its own Content-Security-
// Policy must not get in the way of its hydration.
const baseURL = () => {
  const url = process.env.VESTIGE_BASE_URL;
  if (!url) throw new Error('VESTIGE_BASE_URL not set: the global setup did not start the server');
  return url;
};

test('pages carry security headers, hydrate under their nonce CSP and send no Referer', async ({ page, request }) => {
  const violations: string[] = [];
  page.on('console', (msg) => { if (/Content Security Policy|Refused to/.test(msg.text())) violations.push(msg.text()); });
  const created = await (await request.post(`${baseURL()}/api/rooms`, { data: { name: 'csp room' } })).json();
  const response = await page.goto(`${baseURL()}${created.join_link}`);
  const headers = response!.headers();
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['referrer-policy']).toBe('no-referrer');
  const csp = headers['content-security-policy'];
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toMatch(/script-src 'self' 'nonce-[^']+' 'wasm-unsafe-eval'/);
  // The WASM client ran: only it, after the server's welcome, says connected.
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  expect(violations).toEqual([]);

  // Requests from the page carry no Referer, so the token in the address stays on the page.
  const [sent] = await Promise.all([
    page.waitForRequest((r) => r.url().endsWith('/health')),
    page.evaluate(() => fetch('/health')),
  ]);
  expect(sent.headers()['referer'] ?? '').toBe('');

  for (const path of ['/health', '/api/rooms', `/api/rooms/${created.id}?token=${created.join_token}`]) {
    const other = await request.get(`${baseURL()}${path}`);
    expect(other.headers()['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(other.headers()['x-content-type-options']).toBe('nosniff');
  }
});

test('another site can neither frame a room nor open its WebSocket', async ({ page, request }) => {
  const created = await (await request.post(`${baseURL()}/api/rooms`, { data: { name: 'open plaza', public: true } })).json();
  const roomURL = `${baseURL()}${created.join_link}`;
  const wsURL = `${baseURL().replace('http', 'ws')}/ws/rooms/${created.id}`;
  // A page on a foreign origin, served by the test.
  await page.route('http://evil.test/', (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><iframe id="f" src="${roomURL}"></iframe>`,
  }));
  await page.goto('http://evil.test/');
  await page.waitForTimeout(3000);
  const child = page.frames().find((f) => f !== page.mainFrame());
  expect(child).toBeTruthy();
  // The room's page would show its connection state at once; blocked, the frame holds nothing.
  expect(await child!.locator('[data-testid=connection-state]').count()).toBe(0);
  // The foreign page's script tries the public room's WebSocket: the server refuses the Origin.
  const outcome = await page.evaluate((url) => new Promise<string>((resolve) => {
    const socket = new WebSocket(url);
    socket.onopen = () => resolve('open');
    socket.onerror = () => resolve('refused');
    setTimeout(() => resolve('timeout'), 5000);
  }), wsURL);
  expect(outcome).toBe('refused');
});

test('a photo named León.jpg keeps its name, loses a bidi override, and shows who really uploaded it', async ({ browser, request }) => {
  const { existsSync, readdirSync, readFileSync } = await import('node:fs');
  const { join, resolve } = await import('node:path');
  const datasets = resolve(process.env.VESTIGE_DATASETS ?? join(__dirname, '..', '..', '..', 'shared', 'datasets'));
  const fountain = join(datasets, 'fountain-P11-half', 'images');
  test.skip(!existsSync(fountain), `no datasets at ${datasets}`);
  const created = await (await request.post(`${baseURL()}/api/rooms`, { data: { name: 'names' } })).json();
  const link = `${baseURL()}${created.join_link}`;
  const enter = async (name: string) => {
    const context = await browser.newContext();
    await context.addInitScript((n) => window.localStorage.setItem('vestige.name', n), name);
    const page = await context.newPage();
    await page.goto(link);
    await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
    return page;
  };
  const ana = await enter('Ana');
  const ben = await enter('Ben');
  const photo = readFileSync(join(fountain, readdirSync(fountain).sort()[0]));
  await ana.locator('input[type=file][multiple]').first().setInputFiles({
    name: 'León\u202Egpj.jpg',
    mimeType: 'image/jpeg',
    buffer: photo,
  });
  const card = ben.locator('[data-testid=photo-card]').first();
  await expect(card).toContainText('Leóngpj.jpg');
  await expect(card).not.toContainText('\u202E');
  // Named by Ana's own connection, not by anything her request could claim.
  await expect(card).toContainText('by Ana');
});
