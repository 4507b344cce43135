/**
 * The UltraEasy simulator: the shared LifeScan binary simulator (`../lifescan-binary/simulator.ts`)
 * with this meter's dialect and what its memory can hold (no control flag, no meal marker).
 */
import { secondsFromNaive } from '../lifescan-binary/codec.ts';
import { LifeScanSimulator, parseSimulatorOptions, type SimulatedReading, type SimulatorRules } from '../lifescan-binary/simulator.ts';
import { HI_CODE, LO_CODE, ULTRAEASY_DRIVER_ID, ultraEasyDialect } from './codec.ts';

export const ultraEasySimulatorRules: SimulatorRules = {
  driverId: ULTRAEASY_DRIVER_ID,
  defaultSerial: 'UESIM0001',
  defaultFirmware: 'P02.00.0025/05/07',
  isSerial: (s) => /^[0-9A-Z]{9}$/.test(s),
  readingProblem: (r) => {
    if (r.control) return 'a reading without control: the UltraEasy records no control flag';
    if (r.meal && r.meal !== 'none') return 'a reading without meal: the UltraEasy records no meal marker';
    if (typeof r.value === 'number' && r.value >= LO_CODE) return 'a value below 65534 (0xFFFE/0xFFFF are the LO/HI codes)';
    return null;
  },
  toWire: (r, epoch) => ({
    seconds: secondsFromNaive(r.time, epoch),
    glucose: r.value === 'HI' ? HI_CODE : r.value === 'LO' ? LO_CODE : r.value,
    control: false,
    meal: null,
  }),
  defaultMemory: (clock) => {
    const start = Date.parse(`${clock}Z`) - 2 * 86400_000;
    const plan: [number, number | 'HI' | 'LO'][] = [
      [7.5, 104],
      [13, 151],
      [19, 127],
      [24 + 8, 92],
      [24 + 14, 183],
    ];
    return plan.map(([h, value]) => ({ time: new Date(start + h * 3600_000).toISOString().slice(0, 19), value }));
  },
};

export function createUltraEasySimulator(options: Record<string, unknown> = {}): LifeScanSimulator {
  return new LifeScanSimulator(ultraEasyDialect, ultraEasySimulatorRules, parseSimulatorOptions(ultraEasySimulatorRules, options));
}

export type { SimulatedReading };
