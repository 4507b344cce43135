import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** Debian package for each tool the tests run, for the error message. */
const APT_PACKAGES: Record<string, string> = {
  socat: 'socat',
  mosquitto: 'mosquitto',
  mosquitto_pub: 'mosquitto-clients',
  mosquitto_sub: 'mosquitto-clients',
  storescu: 'dcmtk',
  echoscu: 'dcmtk',
  zbarimg: 'zbar-tools',
};

/**
 * Returns the absolute path of `name` on PATH, or throws `<name> not found: run apt-get install -y
 * <package>` so the test fails with the fix in its message.
 */
export function requireTool(name: string, aptPackage: string = APT_PACKAGES[name] ?? name): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} not found: run apt-get install -y ${aptPackage}`);
}
