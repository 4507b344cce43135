/**
 * The ASTM dialects, most specific first; `generic` matches anything and comes last.
 */
import { abbottAfinion2 } from './abbott-afinion2.ts';
import { abbottArchitect } from './abbott-architect.ts';
import { elektronika77 } from './elektronika77.ts';
import { genericDialect } from './generic.ts';
import { horibaPentra } from './horiba-pentra.ts';
import { rocheCobasC111 } from './roche-cobas-c111.ts';
import { rocheCobasC311 } from './roche-cobas-c311.ts';
import { rocheUrisys } from './roche-urisys.ts';
import { siemensDcaVantage } from './siemens-dca-vantage.ts';
import type { AstmDialect } from './types.ts';

export type { AstmDialect, TestMapping } from './types.ts';

export const DIALECTS: readonly AstmDialect[] = [
  rocheCobasC111,
  rocheCobasC311,
  horibaPentra,
  siemensDcaVantage,
  abbottAfinion2,
  abbottArchitect,
  elektronika77,
  rocheUrisys,
  genericDialect,
];

export function findDialect(id: string): AstmDialect | undefined {
  return DIALECTS.find((d) => d.id === id);
}

/** The dialect whose sender pattern fits H-5; `generic` when none does. */
export function detectDialect(sender: string[]): AstmDialect {
  return DIALECTS.find((d) => d.matches(sender)) ?? genericDialect;
}
