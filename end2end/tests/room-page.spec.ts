// The room page as people use it (issue 11): inviting from the room, the page a stranger gets,
// drops anywhere, toasts that follow each photo, thumbnails for every member, who may take a
// photo away, and the page agreeing with the download. Real photos, desktop and 390 px.
import { test, expect, Page, Browser, BrowserContext } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { dropFiles } from '../drop';

const baseURL = () => process.env.VESTIGE_BASE_URL as string;
const artifacts = join(__dirname, '..', 'artifacts');
const datasets = resolve(process.env.VESTIGE_DATASETS ?? join(__dirname, '..', '..', '..', 'shared', 'datasets'));
const fountain = join(datasets, 'fountain-P11-half', 'images');
const castle = join(datasets, 'sceaux-castle-half', 'images');
const haveData = existsSync(fountain) && existsSync(castle);
const fountainPhoto = (i: number) => join(fountain, readdirSync(fountain).sort()[i]);
const castlePhoto = (i: number) => join(castle, readdirSync(castle).sort()[i]);

async function person(browser: Browser, name: string, width = 1280): Promise<[BrowserContext, Page]> {
  const context = await browser.newContext({ viewport: { width, height: width < 500 ? 844 : 800 } });
  await context.addInitScript((n) => window.localStorage.setItem('vestige.name', n), name);
  return [context, await context.newPage()];
}

async function connected(page: Page) {
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
}

async function audit(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

const card = (page: Page, name: string) => page.locator('[data-testid=photo-card]', { hasText: name });

test('the room page invites, and a page without a valid token asks for an invitation', async ({ browser }) => {
  mkdirSync(artifacts, { recursive: true });
  const [anaContext, ana] = await person(browser, 'Ana');
  await anaContext.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseURL() });
  await ana.goto(`${baseURL()}/`);
  await ana.screenshot({ path: join(artifacts, 'lobby.png'), fullPage: true });
  await ana.getByLabel('Room').fill('Portail de Lund');
  await ana.getByRole('button', { name: 'Create room' }).click();
  await connected(ana);
  // The room's name, not its slug, heads the page.
  await expect(ana.getByTestId('room-title')).toHaveText('Portail de Lund');
  // An empty room says what to do first; the settings stay folded away.
  await expect(ana.getByTestId('first-step')).toContainText('two or more photos');
  await expect(ana.getByLabel('Refine the whole model every (photos)')).toBeHidden();
  await ana.screenshot({ path: join(artifacts, 'room-empty.png'), fullPage: true });

  await ana.getByRole('button', { name: 'Invite' }).click();
  const link = await ana.getByTestId('invite-link').inputValue();
  expect(link).toBe(ana.url());
  expect(link).toMatch(/\/rooms\/portail-de-lund\?token=[0-9a-f]{64}$/);
  await ana.getByRole('button', { name: 'Copy link' }).click();
  await expect(ana.getByRole('button', { name: 'Copied' })).toBeVisible();
  expect(await ana.evaluate(() => navigator.clipboard.readText())).toBe(link);
  expect(await audit(ana)).toEqual([]);

  // The link opens the room in someone else's browser, on a phone.
  const [benContext, ben] = await person(browser, 'Ben', 390);
  await ben.goto(link);
  await connected(ben);
  await expect(ben.getByTestId('avatar')).toHaveCount(2);
  await expect(ana.getByTestId('avatar')).toHaveCount(2);
  // At 390 px the header stays one line and nothing overflows sideways.
  const header = await ben.locator('.room-header').boundingBox();
  expect(header!.height).toBeLessThan(64);
  expect(await ben.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);

  // Without the token: no drop zone, no settings, a clear next step.
  const [strangerContext, stranger] = await person(browser, 'Cleo');
  await stranger.goto(link.replace(/\?token=.*/, ''));
  await expect(stranger.getByTestId('connection-state')).toHaveAttribute('data-state', 'refused');
  await expect(stranger.getByTestId('not-invited')).toBeVisible();
  await expect(stranger.getByRole('heading', { name: 'Ask for an invitation' })).toBeVisible();
  await expect(stranger.locator('.dropzone')).toHaveCount(0);
  await expect(stranger.getByRole('button', { name: /save/i })).toHaveCount(0);
  expect(await audit(stranger)).toEqual([]);
  // A damaged token is no better than none.
  await stranger.goto(link.slice(0, -4) + '0000');
  await expect(stranger.getByTestId('not-invited')).toBeVisible();
  await stranger.screenshot({ path: join(artifacts, 'room-not-invited.png'), fullPage: true });
  for (const context of [anaContext, benContext, strangerContext]) await context.close();
});

test('drops anywhere, toasts that follow each photo, thumbnails for all, and only the uploader removes', async ({ browser, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(240_000);
  const created = await request.post(`${baseURL()}/api/rooms`, { data: { name: 'Fontaine' } });
  expect(created.status()).toBe(201);
  const room = await created.json();
  const link = `${baseURL()}${room.join_link}`;
  const [anaContext, ana] = await person(browser, 'Ana');
  const [benContext, ben] = await person(browser, 'Ben', 390);
  for (const page of [ana, ben]) {
    await page.goto(link);
    await connected(page);
  }

  await expect(ana.getByTestId('first-step')).toBeVisible();
  // A photo dropped on the 3D view, not the drop zone, is uploaded; the page stays the room.
  const first = basename(fountainPhoto(0));
  await dropFiles(ana, '[data-testid=viewer]', [fountainPhoto(0)]);
  expect(ana.url()).toBe(link);
  await expect(ana.getByTestId('first-step')).toHaveCount(0);
  // Alone, it waits for a partner: said plainly, not as a failure with a Retry.
  for (const page of [ana, ben]) {
    await expect(card(page, first)).toHaveAttribute('data-look', 'waiting', { timeout: 60_000 });
    await expect(card(page, first)).toContainText('Waiting for a second photo');
  }
  const waitToast = ana.locator('[data-testid=toast]', { hasText: 'waiting for a second photo' });
  await expect(waitToast).toHaveAttribute('data-kind', 'info');
  await expect(ana.locator('[data-testid=toast][data-kind=warning]')).toHaveCount(0);
  await expect(waitToast.getByRole('button', { name: 'Retry' })).toHaveCount(0);

  // The other member sees the photo itself, from the server's thumbnail.
  const thumb = card(ben, first).locator('img.thumb');
  await expect(thumb).toHaveAttribute('src', /\/photos\/[0-9a-f]{64}\/thumbnail/);
  await expect.poll(() => thumb.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(100);

  // The second photo starts the model; the waiting toast goes with the wait.
  await dropFiles(ana, '.cards', [fountainPhoto(1)]);
  for (const page of [ana, ben]) {
    await expect(page.getByTestId('photos-registered')).toHaveText('2 / 2', { timeout: 90_000 });
  }
  await expect(ana.locator('[data-testid=toast]', { hasText: 'waiting for a second photo' })).toHaveCount(0);
  await expect(ana.locator('[data-testid=toast]', { hasText: /joined the model/ })).toHaveCount(1);

  // The page's point count is what model.ply holds.
  const ply = await request.get(`${baseURL()}/api/rooms/${room.id}/model.ply?token=${room.join_token}`);
  const header = (await ply.body()).subarray(0, 400).toString('latin1');
  const vertices = Number(/element vertex (\d+)/.exec(header)![1]);
  for (const page of [ana, ben]) {
    await expect(page.getByTestId('points')).toHaveText(String(vertices));
  }
  const cameras = await (await request.get(`${baseURL()}/api/rooms/${room.id}/cameras.json?token=${room.join_token}`)).json();
  expect(cameras.map((c: { image: string }) => c.image)).toEqual([first, basename(fountainPhoto(1))]);

  // The default view frames the model and its cameras: measured on each page's own canvas size.
  for (const page of [ana, ben]) {
    const viewer = page.getByTestId('viewer');
    await expect(viewer).toHaveAttribute('data-cameras', '2');
    await expect(viewer).toHaveAttribute('data-cameras-in-view', '2');
    const share = Number(await viewer.getAttribute('data-model-share'));
    console.log(`model fills ${(share * 100).toFixed(0)} % of the ${page === ana ? 'desktop' : '390 px'} canvas`);
    expect(share).toBeGreaterThan(0.1);
  }
  // "View" on a card puts the eye where that photo was taken.
  const framedEye = (await ana.getByTestId('viewer').getAttribute('data-eye'))!;
  await card(ana, first).getByRole('button', { name: `View the model from ${first}` }).click();
  await expect(ana.getByTestId('viewer')).not.toHaveAttribute('data-eye', framedEye);
  const eyeAttribute = (await ana.getByTestId('viewer').getAttribute('data-eye'))!;
  const eye = eyeAttribute.split(',').map(Number);
  const centre = cameras[0].center as number[];
  const spread = Math.hypot(...centre.map((v, i) => v - cameras[1].center[i]));
  expect(Math.hypot(...eye.map((v, i) => v - centre[i]))).toBeLessThan(spread * 0.01);
  // Top and Fit move the eye again; Fit frames both cameras again.
  await ana.getByTestId('viewer-top').click();
  await expect(ana.getByTestId('viewer')).not.toHaveAttribute('data-eye', eyeAttribute);
  await ana.getByTestId('viewer-fit').click();
  await expect(ana.getByTestId('viewer')).toHaveAttribute('data-cameras-in-view', '2');

  // A photo of another building cannot be placed: now that is worth a warning with Retry.
  const stranger = basename(castlePhoto(0));
  await ana.locator('input[type=file][multiple]').first().setInputFiles([castlePhoto(0)]);
  await expect(card(ana, stranger)).toHaveAttribute('data-status', 'pending', { timeout: 90_000 });
  await expect(ana.locator('[data-testid=toast][data-kind=warning]', { hasText: stranger })).toBeVisible();
  // Ben did not upload it and does not own the room: no button to take it away.
  await expect(card(ben, stranger)).toHaveAttribute('data-status', 'pending');
  await expect(card(ben, stranger).getByRole('button', { name: /Remove/ })).toHaveCount(0);
  await expect(card(ben, stranger).getByRole('button', { name: /Retry/ })).toHaveCount(1);
  // Ana did: removing takes a confirmation, and "Keep" keeps it.
  await card(ana, stranger).getByRole('button', { name: `Remove ${stranger}` }).click();
  await card(ana, stranger).getByRole('button', { name: 'Keep' }).click();
  await expect(card(ana, stranger)).toBeVisible();
  await card(ana, stranger).getByRole('button', { name: `Remove ${stranger}` }).click();
  await card(ana, stranger).getByRole('button', { name: `Yes, remove ${stranger} for everyone` }).click();
  for (const page of [ana, ben]) {
    await expect(card(page, stranger)).toHaveCount(0);
  }
  // Its warning went with it.
  await expect(ana.locator('[data-testid=toast]', { hasText: stranger })).toHaveCount(0);
  await ben.screenshot({ path: join(artifacts, 'room-growing-390.png'), fullPage: true });
  await ana.screenshot({ path: join(artifacts, 'room-growing.png'), fullPage: true });
  for (const context of [anaContext, benContext]) await context.close();
});
