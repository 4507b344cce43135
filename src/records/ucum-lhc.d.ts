/** `@lhncbc/ucum-lhc` ships no types; `units.ts` describes the few calls it makes. */
declare module '@lhncbc/ucum-lhc';
