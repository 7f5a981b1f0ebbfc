// Files dropped on an element the way a browser delivers them: a DataTransfer holding real File
// objects made in the page from the files' bytes, then dragenter, dragover and drop.
import { Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

export async function dropFiles(page: Page, selector: string, files: string[]) {
  const transfer = await page.evaluateHandle((photos) => {
    const data = new DataTransfer();
    for (const { name, base64 } of photos) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      data.items.add(new File([bytes], name, { type: 'image/jpeg' }));
    }
    return data;
  }, files.map((f) => ({ name: basename(f), base64: readFileSync(f).toString('base64') })));
  const target = page.locator(selector);
  await target.dispatchEvent('dragenter', { dataTransfer: transfer });
  await target.dispatchEvent('dragover', { dataTransfer: transfer });
  await target.dispatchEvent('drop', { dataTransfer: transfer });
}
