/**
 * UIDs the DICOM upper layer and the ultrasound driver name (PS3.6 Annex A, checked against
 * pydicom's UID dictionary; see `../shared/research/dicom-and-label-printers.md` A2).
 */

/** The one DICOM application context name (PS3.7 A.2.1). */
export const APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

/**
 * poctd's implementation class UID, a UUID-derived UID (PS3.5 B.2: root `2.25`), fixed once so
 * every build identifies itself the same way in A-ASSOCIATE and in the meta header it writes.
 */
export const IMPLEMENTATION_CLASS_UID = '2.25.203573797002373809282964049999036206029';
/** At most 16 characters (PS3.7 D.3.3.2.3). */
export const IMPLEMENTATION_VERSION_NAME = 'POCTD_0_1';

export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  JpegBaseline: '1.2.840.10008.1.2.4.50',
  JpegExtended: '1.2.840.10008.1.2.4.51',
  JpegLossless: '1.2.840.10008.1.2.4.57',
  JpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  Jpeg2000Lossless: '1.2.840.10008.1.2.4.90',
  Jpeg2000: '1.2.840.10008.1.2.4.91',
  Mpeg2MainProfile: '1.2.840.10008.1.2.4.100',
  Mpeg4HighProfile41: '1.2.840.10008.1.2.4.102',
  HevcMainProfile: '1.2.840.10008.1.2.4.107',
  RleLossless: '1.2.840.10008.1.2.5',
} as const;

export const SopClass = {
  Verification: '1.2.840.10008.1.1',
  StorageCommitmentPush: '1.2.840.10008.1.20.1',
  UltrasoundImage: '1.2.840.10008.5.1.4.1.1.6.1',
  UltrasoundImageRetired: '1.2.840.10008.5.1.4.1.1.6',
  UltrasoundMultiFrameImage: '1.2.840.10008.5.1.4.1.1.3.1',
  UltrasoundMultiFrameImageRetired: '1.2.840.10008.5.1.4.1.1.3',
  EnhancedUltrasoundVolume: '1.2.840.10008.5.1.4.1.1.6.2',
  SecondaryCapture: '1.2.840.10008.5.1.4.1.1.7',
  VideoPhotographicImage: '1.2.840.10008.5.1.4.1.1.77.1.4.1',
  BasicTextSR: '1.2.840.10008.5.1.4.1.1.88.11',
  EnhancedSR: '1.2.840.10008.5.1.4.1.1.88.22',
  ComprehensiveSR: '1.2.840.10008.5.1.4.1.1.88.33',
  Comprehensive3DSR: '1.2.840.10008.5.1.4.1.1.88.34',
  KeyObjectSelection: '1.2.840.10008.5.1.4.1.1.88.59',
  EncapsulatedPdf: '1.2.840.10008.5.1.4.1.1.104.1',
} as const;

/** The storage SOP classes a point-of-care ultrasound sends (the SCP's default accept-list). */
export const ULTRASOUND_STORAGE_CLASSES: readonly string[] = [
  SopClass.UltrasoundImage,
  SopClass.UltrasoundImageRetired,
  SopClass.UltrasoundMultiFrameImage,
  SopClass.UltrasoundMultiFrameImageRetired,
  SopClass.EnhancedUltrasoundVolume,
  SopClass.SecondaryCapture,
  SopClass.VideoPhotographicImage,
  SopClass.BasicTextSR,
  SopClass.EnhancedSR,
  SopClass.ComprehensiveSR,
  SopClass.Comprehensive3DSR,
  SopClass.KeyObjectSelection,
  SopClass.EncapsulatedPdf,
];

/**
 * Transfer syntaxes the SCP accepts, in preference order: the offered compressed syntax is taken as
 * it is (the bytes are stored, never transcoded), so compressed ones come before the uncompressed.
 * Explicit big endian is retired but still sent by old carts; it is stored as received.
 */
export const ACCEPTED_TRANSFER_SYNTAXES: readonly string[] = [
  TransferSyntax.JpegBaseline,
  TransferSyntax.JpegExtended,
  TransferSyntax.JpegLossless,
  TransferSyntax.JpegLosslessSV1,
  TransferSyntax.JpegLsLossless,
  TransferSyntax.JpegLsNearLossless,
  TransferSyntax.Jpeg2000Lossless,
  TransferSyntax.Jpeg2000,
  TransferSyntax.RleLossless,
  TransferSyntax.Mpeg2MainProfile,
  TransferSyntax.Mpeg4HighProfile41,
  TransferSyntax.HevcMainProfile,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
  TransferSyntax.ImplicitVRLittleEndian,
];
