// Content addressing in the browser: photos are named by the SHA-256 of their bytes even where
// WebCrypto is missing, and a shard whose bytes do not match its name is fetched again, never
// drawn.
import { test, expect, APIRequestContext } from '@playwright/test';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const baseURL = () => process.env.VESTIGE_BASE_URL as string;
const datasets = resolve(process.env.VESTIGE_DATASETS ?? join(__dirname, '..', '..', '..', 'shared', 'datasets'));
const fountain = join(datasets, 'fountain-P11-half', 'images');
const haveData = existsSync(fountain);
const photos = (n: number) => readdirSync(fountain).sort().slice(0, n).map((f) => join(fountain, f));

async function createRoom(request: APIRequestContext, name: string) {
  const created = await request.post(`${baseURL()}/api/rooms`, { data: { name } });
  expect(created.status()).toBe(201);
  return created.json();
}

test('without WebCrypto (plain HTTP to another machine), photos are still named by their SHA-256', async ({ page, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(120_000);
  const room = await createRoom(request, 'sans webcrypto');
  // What a page served over plain HTTP from another machine sees: no `crypto.subtle`.
  await page.addInitScript(() => Object.defineProperty(Crypto.prototype, 'subtle', { get: () => undefined }));
  await page.goto(`${baseURL()}${room.join_link}`);
  expect(await page.evaluate(() => window.crypto.subtle)).toBeUndefined();
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  await page.locator('input[type=file][multiple]').first().setInputFiles(photos(2));
  // The server accepts an upload only under the SHA-256 of its bytes.
  await expect(page.getByTestId('photos-registered')).toHaveText('2 / 2', { timeout: 90_000 });
  const ids = await page.getByTestId('photo-card').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-photo')));
  const expected = photos(2).map((f) => createHash('sha256').update(readFileSync(f)).digest('hex'));
  expect(ids.sort()).toEqual(expected.sort());
});

test('a shard damaged on the way is fetched again and never drawn', async ({ page, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(120_000);
  const room = await createRoom(request, 'abimé');
  for (const file of photos(2)) {
    const bytes = readFileSync(file);
    const id = createHash('sha256').update(bytes).digest('hex');
    const put = await request.put(`${baseURL()}/api/rooms/${room.id}/photos/${id}?token=${room.join_token}`, { data: bytes });
    expect(put.status()).toBe(201);
  }
  const status = async () => (await request.get(`${baseURL()}/api/rooms/${room.id}?token=${room.join_token}`)).json();
  await expect.poll(async () => (await status()).photos.registered, { timeout: 90_000 }).toBe(2);
  const points = (await status()).points;
  expect(points).toBeGreaterThan(0);

  // Every shard's first delivery has one colour byte changed: it still decodes, but its hash is
  // wrong. The second delivery is the real one.
  const served = new Map<string, number>();
  await page.route(/\/api\/rooms\/[^/]+\/shards\//, async (route) => {
    const hash = route.request().url().split('/shards/')[1].split('?')[0];
    const times = (served.get(hash) ?? 0) + 1;
    served.set(hash, times);
    const response = await route.fetch();
    const body = Buffer.from(await response.body());
    if (times === 1) body[body.length - 1] ^= 0xff;
    await route.fulfill({ status: response.status(), body, contentType: 'application/octet-stream' });
  });
  await page.goto(`${baseURL()}${room.join_link}`);
  const viewer = page.getByTestId('viewer');
  await expect(viewer).toHaveAttribute('data-points', String(points), { timeout: 30_000 });
  expect(served.size).toBeGreaterThan(0);
  for (const [hash, times] of served) expect(times, hash).toBe(2);
});
