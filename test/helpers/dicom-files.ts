/**
 * Ultrasound DICOM files made with DCMTK for the tests (none ships offline): a data set written as
 * a `dump2dcm` dump with a generated pixel file, then compressed by `dcmcjpeg` / `dcmcrle` as a
 * cart would send it. UIDs are fixed (`+un`: no new instance UID on compression), so a file made
 * twice holds the same UIDs. pydicom's test files are read where Debian puts them.
 */
import { execFileSync } from 'node:child_process';
import { openSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';

export const PYDICOM_FILES = '/usr/lib/python3/dist-packages/pydicom/data/test_files';

export const US_STUDY_UID = '1.2.826.0.1.3680043.10.999.9.1';
export const US_SERIES_UID = '1.2.826.0.1.3680043.10.999.9.1.2';

export interface UsFileSpec {
  name: string;
  sopInstanceUid: string;
  frames?: number;
  rows?: number;
  columns?: number;
  samplesPerPixel?: 1 | 3;
  /** `jpeg` (JPEG baseline, dcmcjpeg +eb), `rle` (dcmcrle), `explicit` (as dump2dcm writes it), `implicit`. */
  encoding: 'jpeg' | 'rle' | 'explicit' | 'implicit';
  /** Extra dump lines, e.g. `(0010,0010) PN [DOE^JANE]` (written in Latin-1). */
  extra?: string[];
  studyUid?: string;
  seriesUid?: string;
}

/** Writes the pixel file in slices, so a several-hundred-MB cine never sits in this process's memory. */
function writePixels(path: string, bytes: number): void {
  const slice = Buffer.alloc(Math.min(bytes, 4 * 1024 * 1024));
  for (let i = 0; i < slice.length; i++) slice[i] = (i * 7 + (i >> 9) * 3) & 0xff;
  const fd = openSync(path, 'w');
  try {
    let left = bytes;
    while (left > 0) {
      const n = Math.min(left, slice.length);
      writeSync(fd, slice, 0, n);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Makes the file in `dir` and returns its path. */
export function makeUsFile(dir: string, spec: UsFileSpec): string {
  const frames = spec.frames ?? 1;
  const rows = spec.rows ?? 48;
  const columns = spec.columns ?? 64;
  const spp = spec.samplesPerPixel ?? 1;
  const raw = join(dir, `${spec.name}.raw`);
  writePixels(raw, frames * rows * columns * spp);
  const multi = frames > 1;
  const lines = [
    '(0002,0010) UI =LittleEndianExplicit',
    '(0008,0005) CS [ISO_IR 100]',
    `(0008,0016) UI =${multi ? 'UltrasoundMultiframeImageStorage' : 'UltrasoundImageStorage'}`,
    `(0008,0018) UI [${spec.sopInstanceUid}]`,
    '(0008,0020) DA [20240501]',
    '(0008,0030) TM [101700]',
    '(0008,0060) CS [US]',
    '(0008,0070) LO [ACME Medical]',
    '(0008,1090) LO [PocketUS 3]',
    '(0018,1000) LO [SN-998877]',
    ...(spec.extra ?? []),
    `(0020,000d) UI [${spec.studyUid ?? US_STUDY_UID}]`,
    `(0020,000e) UI [${spec.seriesUid ?? US_SERIES_UID}]`,
    '(0020,0010) SH [1]',
    `(0028,0002) US ${spp}`,
    `(0028,0004) CS [${spp === 3 ? 'RGB' : 'MONOCHROME2'}]`,
    ...(spp === 3 ? ['(0028,0006) US 0'] : []),
    ...(multi ? [`(0028,0008) IS [${frames}]`, '(0028,0009) AT (0018,1063)', '(0018,1063) DS [33.33]'] : []),
    `(0028,0010) US ${rows}`,
    `(0028,0011) US ${columns}`,
    '(0028,0100) US 8',
    '(0028,0101) US 8',
    '(0028,0102) US 7',
    '(0028,0103) US 0',
    `(7fe0,0010) OB =${raw}`,
  ];
  const dump = join(dir, `${spec.name}.dump`);
  writeFileSync(dump, Buffer.from(lines.join('\n') + '\n', 'latin1'));
  const explicit = join(dir, `${spec.name}-explicit.dcm`);
  const out = join(dir, `${spec.name}.dcm`);
  execFileSync('dump2dcm', ['-q', '+E', dump, spec.encoding === 'explicit' ? out : explicit]);
  if (spec.encoding === 'jpeg') execFileSync('dcmcjpeg', ['-q', '+eb', '+un', explicit, out]);
  if (spec.encoding === 'rle') execFileSync('dcmcrle', ['-q', '+un', explicit, out]);
  if (spec.encoding === 'implicit') execFileSync('dcmconv', ['-q', '+ti', explicit, out]);
  return out;
}
