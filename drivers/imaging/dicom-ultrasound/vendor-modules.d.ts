/**
 * The parts of two untyped packages this driver calls (neither ships declarations).
 */
declare module 'dicom-character-set' {
  /** Decodes one value's bytes with a Specific Character Set (0008,0005) value, e.g. `\\ISO 2022 IR 87`. */
  export function convertBytes(specificCharacterSet: string, bytes: Uint8Array, options?: { vr?: string }): string;
}

declare module 'dcmjs' {
  interface DicomDict {
    meta: Record<string, unknown>;
    dict: Record<string, unknown>;
  }
  const dcmjs: {
    data: {
      DicomMessage: { readFile(buffer: ArrayBuffer, options?: { ignoreErrors?: boolean; untilTag?: string }): DicomDict };
      DicomMetaDictionary: { naturalizeDataset(dict: Record<string, unknown>): Record<string, unknown> };
    };
  };
  export default dcmjs;
}
