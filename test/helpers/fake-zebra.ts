import { FakeZebraPrinter } from '../../drivers/printers/zebra-zpl/simulator.ts';
import type { Cleanups } from './cleanups.ts';

/** The fake Zebra listening on a loopback port, stopped after the test. */
export async function startFakeZebra(cleanups: Cleanups, options: ConstructorParameters<typeof FakeZebraPrinter>[0] = {}): Promise<FakeZebraPrinter> {
  const printer = new FakeZebraPrinter(options);
  await printer.start();
  cleanups.push(() => printer.stop());
  return printer;
}
