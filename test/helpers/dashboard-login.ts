import type { BrowserContext, Page } from 'playwright-core';

/** A test config's `access.users` entries (the lines under `  users:`), one per user. */
export function accessUsersYaml(users: Readonly<Record<string, { password: string; roles: string }>>): string {
  return Object.entries(users)
    .map(([name, u]) => `    - { name: ${name}, roles: ${u.roles}, password: "${u.password}" }`)
    .join('\n');
}

/**
 * A new page on the dashboard at `url` with its login form filled in and sent; `errors` collects
 * the page's uncaught errors from before it loaded.
 */
export async function submitLogin(context: BrowserContext, url: string, username: string, password: string): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  return { page, errors };
}
