/**
 * A study record's capture: the headers of the study's instances, each its Part-10 file up to the
 * pixel data (an SR or a PDF report whole, it has none), with where the whole file is kept and
 * who sent it. It is what the record is decoded from, so `poctd replay` and the golden tests
 * rebuild the record from it; the files themselves, pixel data included, are their own blobs.
 *
 * Layout: the line `POCTD DICOM HEADERS 1\n`, then per instance a 4-byte big-endian length and a
 * JSON object (where the file is and who sent it), a 4-byte big-endian length and the header bytes.
 */
import { HeaderError, parseHeader, PIXEL_DATA_TAG } from '../../../src/protocols/dicom/header.ts';

export const BUNDLE_MAGIC = Buffer.from('POCTD DICOM HEADERS 1\n', 'latin1');

export interface BundledInstance {
  /** The whole Part-10 file in the blob store. */
  sha256: string;
  size: number;
  transfer_syntax_uid: string;
  calling_ae: string | null;
  address: string | null;
  source: 'c-store' | 'folder';
  /** The file up to its pixel data. */
  header: Buffer;
}

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

export function isBundle(bytes: Buffer): boolean {
  return bytes.length >= BUNDLE_MAGIC.length && bytes.subarray(0, BUNDLE_MAGIC.length).equals(BUNDLE_MAGIC);
}

export function encodeBundle(instances: readonly BundledInstance[]): Buffer {
  const parts: Buffer[] = [BUNDLE_MAGIC];
  for (const { header, ...about } of instances) {
    const json = Buffer.from(JSON.stringify(about), 'utf8');
    const lengths = Buffer.alloc(4);
    lengths.writeUInt32BE(json.length);
    const headerLength = Buffer.alloc(4);
    headerLength.writeUInt32BE(header.length);
    parts.push(lengths, json, headerLength, header);
  }
  return Buffer.concat(parts);
}

export function decodeBundle(bytes: Buffer): BundledInstance[] {
  if (!isBundle(bytes)) throw new BundleError('not a DICOM header bundle');
  const out: BundledInstance[] = [];
  let at = BUNDLE_MAGIC.length;
  const take = (what: string): Buffer => {
    if (bytes.length - at < 4) throw new BundleError(`bundle cut short before the length of ${what} ${out.length + 1}`);
    const n = bytes.readUInt32BE(at);
    if (bytes.length - at - 4 < n) throw new BundleError(`bundle cut short inside ${what} ${out.length + 1}`);
    const part = bytes.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return part;
  };
  while (at < bytes.length) {
    let about: Omit<BundledInstance, 'header'>;
    try {
      about = JSON.parse(take('the description of instance').toString('utf8')) as Omit<BundledInstance, 'header'>;
    } catch (error) {
      if (error instanceof BundleError) throw error;
      throw new BundleError(`instance ${out.length + 1}: its description is not JSON`);
    }
    out.push({ ...about, header: take('the header of instance') });
  }
  return out;
}

/**
 * A Part-10 file (or its first bytes, `prefixOnly`) cut before its pixel data: the end of the last
 * top-level element before (7FE0,0010). The whole file when it has no pixel data.
 */
export function headerPart(file: Buffer, options: { prefixOnly?: boolean } = {}): Buffer {
  const { dataSet } = parseHeader(file, options);
  if (dataSet.elements[PIXEL_DATA_TAG] === undefined && !options.prefixOnly) return file;
  let end = 0;
  for (const [tag, element] of Object.entries(dataSet.elements)) {
    if (tag === PIXEL_DATA_TAG) continue;
    end = Math.max(end, element.dataOffset + Math.max(element.length, 0));
  }
  if (end === 0) throw new HeaderError('no element before the pixel data');
  return file.subarray(0, end);
}
