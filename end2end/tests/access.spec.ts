// Ways in other than a mouse on a file picker: photos dropped on the page, an automated
// accessibility audit (axe-core), and every control reached with the Tab key.
import { test, expect, Page, APIRequestContext } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { dropFiles } from '../drop';

const baseURL = () => process.env.VESTIGE_BASE_URL as string;
const datasets = resolve(process.env.VESTIGE_DATASETS ?? join(__dirname, '..', '..', '..', 'shared', 'datasets'));
const fountain = join(datasets, 'fountain-P11-half', 'images');
const haveData = existsSync(fountain);

async function createRoom(request: APIRequestContext, name: string) {
  const created = await request.post(`${baseURL()}/api/rooms`, { data: { name } });
  expect(created.status()).toBe(201);
  return created.json();
}

/** Violations of WCAG 2.1 A and AA rules on the page as it is now, as readable lines. */
async function audit(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

test('photos dropped on the page are uploaded and processed, and the room page passes an accessibility audit', async ({ page, request }) => {
  test.skip(!haveData, `no datasets at ${datasets}`);
  test.setTimeout(120_000);
  const room = await createRoom(request, 'glisser');
  await page.addInitScript(() => window.localStorage.setItem('vestige.name', 'Ana'));
  await page.goto(`${baseURL()}${room.join_link}`);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');

  // A real drag and drop: DataTransfer and File objects built in the page from the photo bytes,
  // then the events a browser fires when files are dragged over the drop zone and let go.
  const files = readdirSync(fountain).sort().slice(0, 2).map((f) => join(fountain, f));
  await dropFiles(page, '.dropzone', files);

  await expect(page.getByTestId('photo-card')).toHaveCount(2);
  await expect(page.getByTestId('photos-registered')).toHaveText('2 / 2', { timeout: 90_000 });
  await expect.poll(async () => Number(await page.getByTestId('points').textContent())).toBeGreaterThan(0);

  // With cards, the model, presence and status on screen.
  expect(await audit(page)).toEqual([]);
});

test('the lobby passes an accessibility audit', async ({ page }) => {
  await page.goto(`${baseURL()}/`);
  await expect(page.getByRole('button', { name: 'Create room' })).toBeVisible();
  expect(await audit(page)).toEqual([]);
});

test('every control of the room page is reached with the Tab key', async ({ page, request }) => {
  const room = await createRoom(request, 'clavier');
  await page.goto(`${baseURL()}${room.join_link}`);
  await expect(page.getByTestId('connection-state')).toHaveAttribute('data-state', 'connected');
  // The folded settings opened, so that their fields count too.
  await page.getByText('Advanced settings').click();
  await expect(page.getByLabel('Refine the whole model every (photos)')).toBeVisible();
  // Every visible, enabled control, named the way a screen reader would find it.
  const describe = () => {
    const name = (el: Element) =>
      `${el.tagName.toLowerCase()}:${el.getAttribute('aria-label') ?? el.id ?? ''}:${(el.textContent ?? '').trim().slice(0, 30)}`;
    const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')].filter((el) => {
      const box = (el as HTMLElement).getBoundingClientRect();
      // Inside a closed <details> a control may keep a box, but it is not shown or focusable.
      const folded = el.tagName !== 'SUMMARY' && el.closest('details:not([open])') !== null;
      const hidden = folded || box.width === 0 || box.height === 0 || getComputedStyle(el).visibility === 'hidden';
      return !hidden && !(el as HTMLButtonElement).disabled && (el as HTMLElement).tabIndex >= 0;
    });
    return { controls: controls.map(name), active: document.activeElement ? name(document.activeElement) : '' };
  };
  const { controls } = await page.evaluate(describe);
  expect(controls.length).toBeGreaterThan(5);
  const reached = new Set<string>();
  for (let i = 0; i < controls.length * 2 + 5; i++) {
    await page.keyboard.press('Tab');
    reached.add((await page.evaluate(describe)).active);
  }
  expect(controls.filter((c) => !reached.has(c))).toEqual([]);
});
