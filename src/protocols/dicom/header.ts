/**
 * Reads a Part-10 file's header without its pixel data: dicom-parser stops at (7FE0,0010), and a
 * prefix of the file is enough. A prefix cut inside an element still gives the elements before it
 * (dicom-parser reports a buffer overrun with the partial data set); a deflated data set is
 * inflated as far as the prefix goes.
 */
import { constants, inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';

export const PIXEL_DATA_TAG = 'x7fe00010';

export interface ParsedHeader {
  dataSet: dicomParser.DataSet;
  /** False when the prefix ended before the pixel data or the end of the data set. */
  complete: boolean;
}

export class HeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HeaderError';
  }
}

function inflatePrefix(bytes: Uint8Array, position: number): Uint8Array {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, position);
  const deflated = Buffer.from(bytes.buffer, bytes.byteOffset + position, bytes.length - position);
  // SYNC_FLUSH: a prefix of a deflate stream inflates as far as it goes instead of failing.
  const inflated = inflateRawSync(deflated, { finishFlush: constants.Z_SYNC_FLUSH });
  return Buffer.concat([head, inflated]);
}

/**
 * The header of a Part-10 file, or of its first bytes when `prefixOnly` says more follow. Throws a
 * `HeaderError` when it is not DICOM, or when the whole file was given and it ends mid-element.
 */
export function parseHeader(bytes: Buffer, { prefixOnly = false }: { prefixOnly?: boolean } = {}): ParsedHeader {
  const array = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  try {
    const dataSet = dicomParser.parseDicom(array, { untilTag: PIXEL_DATA_TAG, inflater: inflatePrefix as (arr: Uint8Array, position: number) => void });
    return { dataSet, complete: true };
  } catch (error) {
    const partial = (error as { dataSet?: dicomParser.DataSet }).dataSet;
    const message = typeof error === 'string' ? error : ((error as { exception?: string }).exception ?? (error as Error).message ?? String(error));
    if (prefixOnly && partial && /overrun/i.test(message)) {
      // The element the prefix cut is not whole: leave it out rather than read half a value.
      for (const [tag, element] of Object.entries(partial.elements)) {
        if (element.dataOffset + Math.max(element.length, 0) > bytes.length) delete partial.elements[tag];
      }
      if (partial.elements['x00080016'] !== undefined) return { dataSet: partial, complete: false };
    }
    throw new HeaderError(message.replace(/^dicomParser\.\w+: /, ''));
  }
}

/** A UID element's value without its padding, or undefined. */
export function uidOf(dataSet: dicomParser.DataSet, tag: string): string | undefined {
  const value = dataSet.string(tag);
  const trimmed = value?.replace(/[\0 ]+$/, '');
  return trimmed === '' ? undefined : trimmed;
}

const SEQUENCE_DELIMITER_LE = Buffer.from('feffdde000000000', 'hex');
const SEQUENCE_DELIMITER_BE = Buffer.from('fffee0dd00000000', 'hex');

/**
 * Why a file (or a received data set) of `totalLength` bytes, whose header `dataSet` was read from
 * its first bytes and whose last 8 bytes are `tail`, ends inside its pixel data; null when it does
 * not. Native pixel data must fit in the file; encapsulated pixel data (undefined length) must end
 * with its sequence delimiter. A half-copied file or a sender that stopped mid-object fails here.
 */
export function pixelDataTruncation(dataSet: dicomParser.DataSet, totalLength: number, tail: Buffer): string | null {
  const pixels = dataSet.elements[PIXEL_DATA_TAG];
  if (!pixels) return null;
  if (pixels.length === 0xffffffff || (pixels as { hadUndefinedLength?: boolean }).hadUndefinedLength) {
    if (tail.equals(SEQUENCE_DELIMITER_LE) || tail.equals(SEQUENCE_DELIMITER_BE)) return null;
    return 'encapsulated pixel data without its sequence delimiter at the end (cut short)';
  }
  const end = pixels.dataOffset + pixels.length;
  return end > totalLength ? `pixel data of ${pixels.length} bytes runs ${end - totalLength} bytes past the end (cut short)` : null;
}
