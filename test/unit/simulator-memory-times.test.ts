import { describe, expect, it } from 'vitest';
import { parseSimulatorOptions as parseUltra2Options } from '../../drivers/glucose/onetouch-ultra2/simulator.ts';
import { parseSimulatorOptions as parseLifeScanOptions } from '../../drivers/glucose/lifescan-binary/simulator.ts';
import { ultraEasySimulatorRules } from '../../drivers/glucose/onetouch-ultraeasy/simulator.ts';
import { verioIqSimulatorRules } from '../../drivers/glucose/onetouch-verio-iq/simulator.ts';

// Times of the right shape that name no real time (Date would roll them into the next day or month).
const NOT_REAL = ['2024-02-30T10:00:00', '2023-02-29T10:00:00', '2024-04-31T08:00:00', '2024-03-01T24:00:00'];

const simulators: [string, (memory: unknown[]) => unknown][] = [
  ['onetouch-ultra2 simulator', (memory) => parseUltra2Options({ memory })],
  ['onetouch-ultraeasy simulator', (memory) => parseLifeScanOptions(ultraEasySimulatorRules, { memory })],
  ['onetouch-verio-iq simulator', (memory) => parseLifeScanOptions(verioIqSimulatorRules, { memory })],
];

describe.each(simulators)('%s memory times', (owner, parse) => {
  it('accepts a real time, 29 February of a leap year included', () => {
    const memory = [
      { time: '2024-02-29T23:59:59', value: 120 },
      { time: '2025-12-31T00:00:00', value: 95 },
    ];
    expect(parse(memory)).toEqual({ memory });
  });

  it.each(NOT_REAL)('refuses %s, naming the reading', (time) => {
    const memory = [
      { time: '2024-01-01T10:00:00', value: 99 },
      { time, value: 99 },
    ];
    expect(() => parse(memory)).toThrow(`${owner}: option memory[1].time must be YYYY-MM-DDTHH:MM:SS in 2000–2099`);
  });

  it('still refuses a year outside 2000–2099 and text of another shape', () => {
    for (const time of ['1999-12-31T10:00:00', '2024-03-01 10:00:00', '2024-03-01T10:00']) {
      expect(() => parse([{ time, value: 99 }]), time).toThrow(`${owner}: option memory[0].time must be`);
    }
  });
});
