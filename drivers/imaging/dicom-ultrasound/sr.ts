/**
 * Measurements from a Structured Report's content tree (research notes A7): OB-GYN (TID 5000),
 * vascular (TID 5100), adult echo (TID 5200), and any other tree the same way. Every NUM content
 * item becomes one flat measurement with its concept code and scheme (LOINC where the scheme is
 * LN), value, unit (UCUM where the scheme says so), and the context that tells one FL from another:
 * the section path, the fetus, the finding site and laterality (from the item or a container
 * above it), the derivation (mean, measured...), the equation it was inferred from, and the
 * selection status. Unmapped and vendor-private codes are kept with their triplet, never dropped.
 *
 * The tree is read with dcmjs (naturalized); `ignoreErrors` lets it read ISO 2022 character sets,
 * whose ideographic parts it leaves undecoded, which touches no code or number read here.
 */
import { createRequire } from 'node:module';
import type dcmjsModule from 'dcmjs';
import type { StudyCode, StudyMeasurement } from '../../../src/records/types.ts';

/** One measurement as the record carries it, less the instance it came from (the caller adds it). */
export type SrMeasurement = Omit<StudyMeasurement, 'sop_instance_uid'>;

export interface SrReport {
  /** The document title (the root concept), e.g. 125000 DCM "OB-GYN Ultrasound Procedure Report". */
  title: StudyCode | null;
  template: string | null;
  completion: string | null;
  verification: string | null;
  measurements: SrMeasurement[];
}

/**
 * dcmjs (~50 ms to load) is loaded on the first SR read, not when the driver registry is built:
 * every command and every daemon start build it, most of them never read an SR.
 */
const require = createRequire(import.meta.url);
let loaded: typeof dcmjsModule | undefined;
const dcmjs = (): typeof dcmjsModule => (loaded ??= require('dcmjs') as typeof dcmjsModule);

type Item = Record<string, unknown>;

const FINDING_SITE = new Set(['SRT:G-C0E3', 'SCT:363698007']);
const LATERALITY = new Set(['SRT:G-C171', 'SCT:272741003']);
const DERIVATION = 'DCM:121401';
const EQUATION = 'DCM:121420';
const SELECTION = 'DCM:121404';
const FETUS_ID = new Set(['LN:11951-1', 'DCM:121030']);
/** Beyond which a tree is not walked further (a malformed or hostile file). */
const MAX_DEPTH = 32;

function items(value: unknown): Item[] {
  if (Array.isArray(value)) return value.filter((v): v is Item => typeof v === 'object' && v !== null);
  return typeof value === 'object' && value !== null ? [value as Item] : [];
}

function str(value: unknown): string | null {
  if (Array.isArray(value)) return str(value[0]);
  if (typeof value === 'number') return String(value);
  if (typeof value !== 'string') return null;
  const t = value.trim();
  return t === '' ? null : t;
}

function conceptOf(sequence: unknown): StudyCode | null {
  const [first] = items(sequence);
  if (!first) return null;
  const code = str(first.CodeValue) ?? str(first.LongCodeValue) ?? str(first.URNCodeValue);
  const scheme = str(first.CodingSchemeDesignator) ?? '';
  if (code === null) return null;
  return { code, scheme, meaning: str(first.CodeMeaning) ?? '' };
}

const key = (c: StudyCode | null): string => (c ? `${c.scheme}:${c.code}` : '');

interface Context {
  path: string[];
  fetus: string | null;
  findingSite: StudyCode | null;
  laterality: StudyCode | null;
}

/** What a content item's modifiers (its own children, or a container's) say. */
function applyModifier(child: Item, into: Partial<Context> & { derivation?: string | null; equation?: string | null; selection?: string | null }): void {
  const relationship = str(child.RelationshipType);
  const name = conceptOf(child.ConceptNameCodeSequence);
  const k = key(name);
  const value = conceptOf(child.ConceptCodeSequence);
  if (FETUS_ID.has(k)) {
    into.fetus = str(child.TextValue) ?? value?.meaning ?? into.fetus ?? null;
    return;
  }
  if (relationship !== 'HAS CONCEPT MOD' && relationship !== 'HAS OBS CONTEXT' && relationship !== 'HAS ACQ CONTEXT' && relationship !== 'INFERRED FROM') return;
  if (FINDING_SITE.has(k)) into.findingSite = value;
  else if (LATERALITY.has(k)) into.laterality = value;
  else if (k === DERIVATION) into.derivation = value?.meaning ?? null;
  else if (k === SELECTION) into.selection = value?.meaning ?? null;
  else if (relationship === 'INFERRED FROM' && (k === EQUATION || str(child.ValueType) === 'CODE')) into.equation = value?.meaning ?? null;
}

function measurementOf(item: Item, context: Context): SrMeasurement | null {
  const name = conceptOf(item.ConceptNameCodeSequence);
  if (!name) return null;
  const own: { findingSite?: StudyCode | null; laterality?: StudyCode | null; fetus?: string | null; derivation?: string | null; equation?: string | null; selection?: string | null } = {};
  for (const child of items(item.ContentSequence)) applyModifier(child, own);
  const [measured] = items(item.MeasuredValueSequence);
  const raw = measured ? str(measured.NumericValue) : null;
  const value = raw === null ? null : Number(raw);
  const unit = measured ? conceptOf(measured.MeasurementUnitsCodeSequence) : null;
  const qualifier = conceptOf(item.NumericValueQualifierCodeSequence) ?? (measured ? conceptOf(measured.NumericValueQualifierCodeSequence) : null);
  return {
    code: name.code,
    scheme: name.scheme,
    meaning: name.meaning,
    loinc: name.scheme === 'LN' ? name.code : null,
    value: value !== null && Number.isFinite(value) ? value : null,
    unit: unit?.code ?? null,
    ucum: unit && (unit.scheme === 'UCUM' || unit.scheme === 'UCUM ') ? unit.code : null,
    text: qualifier?.meaning ?? (value !== null && !Number.isFinite(value) ? raw : null),
    path: context.path,
    fetus: own.fetus ?? context.fetus,
    finding_site: own.findingSite ?? context.findingSite,
    laterality: own.laterality ?? context.laterality,
    derivation: own.derivation ?? null,
    equation: own.equation ?? null,
    selection: own.selection ?? null,
  };
}

function walk(node: Item, context: Context, out: SrMeasurement[], depth: number): void {
  if (depth > MAX_DEPTH) return;
  const children = items(node.ContentSequence);
  // A container's modifiers (finding site, laterality, fetus) hold for everything inside it.
  const local: Context = { ...context };
  for (const child of children) {
    if (str(child.ValueType) !== 'NUM' && str(child.ValueType) !== 'CONTAINER') applyModifier(child, local);
  }
  for (const child of children) {
    const type = str(child.ValueType);
    if (type === 'CONTAINER') {
      // A container may lack its concept name (pydicom's test-SR.dcm has one): it still holds content.
      const meaning = conceptOf(child.ConceptNameCodeSequence)?.meaning;
      walk(child, { ...local, path: meaning ? [...local.path, meaning] : local.path }, out, depth + 1);
    } else if (type === 'NUM') {
      const m = measurementOf(child, local);
      if (m) out.push(m);
    }
  }
}

/** The report read from a whole Part-10 SR file. Throws when dcmjs cannot read it. */
export function readSr(file: Buffer): SrReport {
  const buffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer;
  const message = dcmjs().data.DicomMessage.readFile(buffer, { ignoreErrors: true });
  const root = dcmjs().data.DicomMetaDictionary.naturalizeDataset(message.dict) as Item;
  const measurements: SrMeasurement[] = [];
  walk(root, { path: [], fetus: null, findingSite: null, laterality: null }, measurements, 0);
  const [template] = items(root.ContentTemplateSequence);
  return {
    title: conceptOf(root.ConceptNameCodeSequence),
    template: template ? str(template.TemplateIdentifier) : null,
    completion: str(root.CompletionFlag),
    verification: str(root.VerificationFlag),
    measurements,
  };
}
