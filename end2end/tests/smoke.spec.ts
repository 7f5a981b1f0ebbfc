import { test, expect } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const baseURL = () => {
  const url = process.env.VESTIGE_BASE_URL;
  if (!url) throw new Error('VESTIGE_BASE_URL not set: the global setup did not start the server');
  return url;
};
const artifacts = join(__dirname, '..', 'artifacts');

test('room page connects through the server welcome, and /health reports the session', async ({ page, request }) => {
  const consoleErrors: string[] = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => consoleErrors.push(err.message));
  page.on('response', (res) => { if (res.status() >= 400) consoleErrors.push(`${res.status()} ${res.url()}`); });

  const created = await request.post(`${baseURL()}/api/rooms`, { data: { name: 'auditorio' } });
  expect(created.status()).toBe(201);
  const room = await created.json();
  await page.goto(`${baseURL()}${room.join_link}`);
  await expect(page.getByRole('heading', { name: room.id })).toBeVisible();
  const indicator = page.getByTestId('connection-state');
  // The server renders "connecting"; only the WASM client, after the server's welcome, says connected.
  await expect(indicator).toHaveAttribute('data-state', 'connected');
  await expect(indicator).toHaveText(/Connected/);

  const health = await request.get(`${baseURL()}/health`);
  expect(health.status()).toBe(200);
  const body = await health.json();
  expect(body.status).toBe('ok');
  expect(typeof body.version).toBe('string');
  expect(body.uptime_seconds).toBeGreaterThan(0);
  expect(body.open_connections).toBeGreaterThanOrEqual(1);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'room-page.png'), fullPage: true });
  expect(consoleErrors).toEqual([]);
});

test('an invalid room name is explained, not crashed on', async ({ page }) => {
  await page.goto(`${baseURL()}/rooms/Not..Valid`);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'offline');
  await expect(page.getByTestId('connection-state')).toContainText('lowercase');
});

test('the lobby creates a private room and opens it through its invitation link', async ({ page, browser }) => {
  await page.goto(`${baseURL()}/`);
  await page.getByLabel('Room').fill('Sceaux castle');
  await page.getByRole('button', { name: 'Create room' }).click();
  await expect(page).toHaveURL(/\/rooms\/sceaux-castle\?token=[0-9a-f]{64}$/);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  const link = page.url();

  // Someone else pastes the invitation link into their lobby.
  const other = await browser.newPage();
  await other.goto(`${baseURL()}/`);
  await other.getByLabel('Invitation link').fill(link);
  await other.getByRole('button', { name: 'Join' }).click();
  await expect(other.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');

  // Without the token the room says why it cannot be entered, instead of retrying forever.
  const stranger = await browser.newContext();
  const strangerPage = await stranger.newPage();
  await strangerPage.goto(`${baseURL()}/rooms/sceaux-castle`);
  await expect(strangerPage.getByTestId('connection-state')).toHaveAttribute('data-state', 'refused');
  // A private room without its token answers as if it did not exist.
  await expect(strangerPage.getByTestId('not-invited')).toContainText('invitation link');
  await stranger.close();
});
