// The room page in a real browser with real photos: uploads, live progress for every member,
// the model drawn on the canvas (checked on its pixels), a newcomer, a server restart, bad files.
import { test, expect, Page, Browser, APIRequestContext } from '@playwright/test';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startServer, stopServer } from '../server';

const baseURL = () => process.env.VESTIGE_BASE_URL as string;
const artifacts = join(__dirname, '..', 'artifacts');
const datasets = resolve(process.env.VESTIGE_DATASETS ?? join(__dirname, '..', '..', '..', 'shared', 'datasets'));
const fountain = join(datasets, 'fountain-P11-half', 'images');
const photos = (n: number) => readdirSync(fountain).sort().slice(0, n).map((f) => join(fountain, f));
const haveData = existsSync(fountain);

async function createRoom(request: APIRequestContext, base: string, name: string) {
  const created = await request.post(`${base}/api/rooms`, { data: { name } });
  expect(created.status()).toBe(201);
  return created.json();
}

async function enter(browser: Browser, url: string, name: string): Promise<Page> {
  const context = await browser.newContext();
  // Each person has chosen a name in the lobby before.
  await context.addInitScript((n) => window.localStorage.setItem('vestige.name', n), name);
  const page = await context.newPage();
  await page.goto(url);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  return page;
}

const registered = (page: Page) => page.getByTestId('photos-registered');
const pointCount = async (page: Page) => Number((await page.getByTestId('points').textContent()) ?? '0');

/** Pixels of the viewer's canvas that differ from its background, counted in the page. */
async function drawnPixels(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const canvas = document.querySelector('[data-testid=viewer]') as HTMLCanvasElement;
    const image = new Image();
    image.src = canvas.toDataURL('image/png');
    await image.decode();
    const copy = document.createElement('canvas');
    copy.width = image.width;
    copy.height = image.height;
    const ctx = copy.getContext('2d')!;
    ctx.drawImage(image, 0, 0);
    const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
    const [r0, g0, b0] = [data[0], data[1], data[2]];
    let drawn = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (Math.abs(data[i] - r0) + Math.abs(data[i + 1] - g0) + Math.abs(data[i + 2] - b0) > 30) drawn++;
    }
    return drawn;
  });
}

/** Fingers on the viewer: each path is one finger's positions (fractions of the canvas), moved
 * together step by step, as touch pointer events. */
async function touch(page: Page, paths: [number, number][][]) {
  await page.getByTestId('viewer').evaluate(async (canvas, paths) => {
    const box = canvas.getBoundingClientRect();
    const fire = (type: string, finger: number, [x, y]: [number, number]) =>
      canvas.dispatchEvent(new PointerEvent(type, {
        pointerId: 10 + finger, pointerType: 'touch', isPrimary: finger === 0, bubbles: true, cancelable: true,
        clientX: box.left + x * box.width, clientY: box.top + y * box.height, buttons: 1,
      }));
    const frame = () => new Promise((ok) => requestAnimationFrame(ok));
    paths.forEach((path, finger) => fire('pointerdown', finger, path[0]));
    for (let step = 1; step < paths[0].length; step++) {
      paths.forEach((path, finger) => fire('pointermove', finger, path[step]));
      await frame();
    }
    paths.forEach((path, finger) => fire('pointerup', finger, path[path.length - 1]));
  }, paths);
}

/** The canvas as an image, once the camera has rested and the whole model is drawn. */
async function restedImage(page: Page): Promise<string> {
  const canvas = page.getByTestId('viewer');
  await expect.poll(async () => (await canvas.getAttribute('data-drawn')) === (await canvas.getAttribute('data-points'))).toBe(true);
  return canvas.evaluate((c: HTMLCanvasElement) => c.toDataURL());
}

let referencePoints = 0;

test('two members see uploads, progress and the model grow; a newcomer gets the same model', async ({ browser, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(180_000);
  const room = await createRoom(request, baseURL(), 'fontaine');
  const link = `${baseURL()}${room.join_link}`;
  const ana = await enter(browser, link, 'Ana');
  const ben = await enter(browser, link, 'Ben');
  await expect(ben.getByTestId('avatar')).toHaveCount(2);

  await ana.locator('input[type=file][multiple]').first().setInputFiles(photos(4));
  // Both see a card per photo and the processing as it happens.
  for (const page of [ana, ben]) {
    await expect(page.getByTestId('photo-card')).toHaveCount(4);
  }
  await expect(ben.locator('[data-testid=photo-card][data-status=processing]').first()).toBeVisible();
  await expect(ben.locator('[data-testid=photo-card] [role=progressbar]').first()).toBeVisible();

  // The model grows: points appear, then all four photos are placed.
  await expect.poll(() => pointCount(ben), { timeout: 120_000 }).toBeGreaterThan(0);
  for (const page of [ana, ben]) {
    await expect(registered(page)).toHaveText('4 / 4', { timeout: 120_000 });
  }
  referencePoints = await pointCount(ana);
  expect(await pointCount(ben)).toBe(referencePoints);
  // The canvas shows them: checked on its pixels, not on the DOM.
  await expect.poll(() => drawnPixels(ben), { timeout: 30_000 }).toBeGreaterThan(500);

  // The server's periodic system status reaches the page.
  await expect(ben.getByTestId('server-load')).toContainText(/CPU \d+ %/, { timeout: 15_000 });

  const cleo = await enter(browser, link, 'Cleo');
  await expect(registered(cleo)).toHaveText('4 / 4');
  expect(await pointCount(cleo)).toBe(referencePoints);
  await expect.poll(() => drawnPixels(cleo), { timeout: 30_000 }).toBeGreaterThan(500);

  // Touch: one finger orbits, two fingers pinch; each changes the view, and the model stays drawn.
  // First the newest photo's highlight fades out: the view is still when two frames agree.
  let still = await restedImage(cleo);
  await expect.poll(async () => { const again = await restedImage(cleo); const same = again === still; still = again; return same; }, { timeout: 10_000 }).toBe(true);
  await touch(cleo, [[[0.4, 0.5], [0.45, 0.5], [0.5, 0.5], [0.55, 0.52]]]);
  const orbited = await restedImage(cleo);
  expect(orbited).not.toBe(still);
  await touch(cleo, [[[0.45, 0.5], [0.4, 0.5], [0.35, 0.5]], [[0.55, 0.5], [0.6, 0.5], [0.65, 0.5]]]);
  expect(await restedImage(cleo)).not.toBe(orbited);
  await expect.poll(() => drawnPixels(cleo)).toBeGreaterThan(500);

  mkdirSync(artifacts, { recursive: true });
  await ana.screenshot({ path: join(artifacts, 'room-desktop.png'), fullPage: true });
  await ana.setViewportSize({ width: 390, height: 844 });
  await expect(ana.getByTestId('viewer')).toBeVisible();
  const overflow = await ana.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(0);
  await ana.screenshot({ path: join(artifacts, 'room-390.png'), fullPage: true });
});

test('a text file renamed .jpg gives an error toast and nothing else breaks', async ({ browser, request }) => {
  const room = await createRoom(request, baseURL(), 'mauvais fichier');
  const page = await enter(browser, `${baseURL()}${room.join_link}`, 'Ana');
  await page.locator('input[type=file][multiple]').first().setInputFiles({
    name: 'notes.jpg',
    mimeType: 'image/jpeg',
    buffer: Buffer.from('these are my notes, not a photo\n'),
  });
  const toast = page.locator('[data-testid=toast][data-kind=error]');
  await expect(toast).toBeVisible();
  await expect(toast).toContainText(/photo|image|JPEG|PNG/i);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  await expect(registered(page)).toHaveText('0 / 0');
});

test('pages recover by themselves when the server is killed and restarted mid-session', async ({ browser, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(240_000);
  const server = await startServer();
  const port = Number(new URL(server.baseURL).port);
  let pid = server.pid;
  try {
    const room = await createRoom(request, server.baseURL, 'fontaine');
    const link = `${server.baseURL}${room.join_link}`;
    const ana = await enter(browser, link, 'Ana');
    const ben = await enter(browser, link, 'Ben');
    await ana.locator('input[type=file][multiple]').first().setInputFiles(photos(4));
    await expect(ana.getByTestId('photo-card')).toHaveCount(4);
    // Wait until all four are acknowledged (on the server), then kill it mid-processing.
    await expect.poll(async () => (await (await request.get(`${server.baseURL}/api/rooms/${room.id}?token=${room.join_token}`)).json()).photos.total).toBe(4);
    stopServer(pid, 'SIGKILL');
    for (const page of [ana, ben]) {
      await expect(page.getByTestId('connection-state')).not.toHaveAttribute('data-state', 'connected');
    }
    // Made while offline: queued in the page, sent after the reconnect.
    await ana.getByText('Advanced settings').click();
    await ana.getByLabel('Refine the whole model every (photos)').fill('7');
    await ana.getByTestId('setting-refine_every').getByRole('button', { name: 'Save' }).click();
    const again = await startServer({ port, dataDir: server.dataDir });
    pid = again.pid;
    // No reload: the pages reconnect, resume, and end where a run without the restart ends.
    for (const page of [ana, ben]) {
      await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected', { timeout: 60_000 });
      await expect(registered(page)).toHaveText('4 / 4', { timeout: 120_000 });
    }
    if (referencePoints > 0) {
      expect(await pointCount(ana)).toBe(referencePoints);
    }
    await expect(ben.getByLabel('Refine the whole model every (photos)')).toHaveValue('7');
    await expect(ben.getByTestId('setting-refine_every')).toContainText('set by Ana');
    expect(await pointCount(ben)).toBe(await pointCount(ana));
  } finally {
    stopServer(pid);
  }
});

test('concurrent setting edits show a conflict with both values, resolved by averaging', async ({ browser, request }) => {
  const room = await createRoom(request, baseURL(), 'reglages');
  const link = `${baseURL()}${room.join_link}`;
  const ana = await enter(browser, link, 'Ana');
  const ben = await enter(browser, link, 'Ben');
  const field = (page: Page) => page.getByLabel('Refine the whole model every (photos)');
  const save = (page: Page) => page.getByTestId('setting-refine_every').getByRole('button', { name: 'Save' });
  for (const page of [ana, ben]) await page.getByText('Advanced settings').click();
  // Ben starts editing from the default; Ana saves first.
  await field(ben).fill('20');
  await field(ana).fill('5');
  await save(ana).click();
  await expect(ana.getByTestId('setting-refine_every')).toContainText('set by Ana');
  await expect(ben.getByTestId('setting-refine_every')).toContainText('set by Ana');
  await expect(field(ben)).toHaveValue('20'); // what Ben typed is not overwritten
  await save(ben).click();
  const conflict = ben.getByTestId('setting-conflict');
  await expect(conflict).toContainText('Ana changed refine every to 5');
  await expect(conflict).toContainText('yours: 20');
  await expect(conflict.getByRole('button', { name: 'Keep mine' })).toBeVisible();
  await expect(conflict.getByRole('button', { name: 'Use theirs' })).toBeVisible();
  await conflict.getByRole('button', { name: /Average \(13\)/ }).click();
  for (const page of [ana, ben]) {
    await expect(field(page)).toHaveValue('13');
    await expect(page.getByTestId('setting-refine_every')).toContainText('set by Ben');
  }
  await expect(conflict).toHaveCount(0);
});
