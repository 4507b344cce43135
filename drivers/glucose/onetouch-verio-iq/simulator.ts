/**
 * The Verio IQ simulator: the shared LifeScan binary simulator (`../lifescan-binary/simulator.ts`)
 * with this meter's dialect and what its memory can hold (numbers only: no HI/LO code is known).
 */
import { secondsFromNaive, type Meal } from '../lifescan-binary/codec.ts';
import { LifeScanSimulator, parseSimulatorOptions, type SimulatorRules } from '../lifescan-binary/simulator.ts';
import { VERIO_IQ_DRIVER_ID, verioIqDialect } from './codec.ts';

export const verioIqSimulatorRules: SimulatorRules = {
  driverId: VERIO_IQ_DRIVER_ID,
  defaultSerial: 'VIQSIM0001',
  defaultFirmware: 'SIM01.00.00',
  isSerial: (s) => /^[0-9A-Z]{6,16}$/.test(s),
  readingProblem: (r) => {
    if (typeof r.value !== 'number') return 'a number: the Verio IQ has no documented HI/LO code (use > 600 or < 20 mg/dL)';
    if (r.value > 0xffff) return 'a value up to 65535';
    return null;
  },
  toWire: (r, epoch) => ({
    seconds: secondsFromNaive(r.time, epoch),
    glucose: r.value as number,
    control: r.control ?? false,
    meal: r.meal ?? 'none',
  }),
  defaultMemory: (clock) => {
    const start = Date.parse(`${clock}Z`) - 2 * 86400_000;
    const plan: [number, number, Meal, boolean][] = [
      [7.5, 98, 'before', false],
      [8, 121, 'none', true],
      [13, 162, 'after', false],
      [24 + 8, 87, 'before', false],
      [24 + 14, 171, 'after', false],
    ];
    return plan.map(([h, value, meal, control]) => ({ time: new Date(start + h * 3600_000).toISOString().slice(0, 19), value, meal, control }));
  },
};

export function createVerioIqSimulator(options: Record<string, unknown> = {}): LifeScanSimulator {
  return new LifeScanSimulator(verioIqDialect, verioIqSimulatorRules, parseSimulatorOptions(verioIqSimulatorRules, options));
}
