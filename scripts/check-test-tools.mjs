#!/usr/bin/env node
// `npm test` runs against real components. When one is missing the run fails here, naming the
// exact command that installs it, instead of skipping tests silently.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const tools = [
  ['mosquitto', 'mosquitto'],
  ['mosquitto_sub', 'mosquitto-clients'],
  ['mosquitto_pub', 'mosquitto-clients'],
  ['socat', 'socat'],
  // Label tests: the rendered barcode decoded by two readers, and LPrint as a second ZPL client.
  ['zbarimg', 'zbar-tools'],
  ['ZXingReader', 'zxing-cpp-tools'],
  ['lprint', 'lprint'],
  // The DICOM tests: DCMTK as the real SCU and reader, Orthanc as a second SCU.
  ['storescu', 'dcmtk'],
  ['dcmsend', 'dcmtk'],
  ['dcmdump', 'dcmtk'],
  ['dsrdump', 'dcmtk'],
  ['dcmmkdir', 'dcmtk'],
  ['Orthanc', 'orthanc'],
  // The dashboard's browser tests (test/helpers/browser.ts): without it they would only warn and skip.
  ['chromium-headless-shell', 'chromium-headless-shell'],
];

const missing = tools.filter(([command]) => {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});

// pydicom's test files (real DICOM inputs of the DICOM tests), where Debian's package puts them.
if (!existsSync('/usr/lib/python3/dist-packages/pydicom/data/test_files/test-SR.dcm')) missing.push(['pydicom test files', 'python3-pydicom']);

if (missing.length > 0) {
  const packages = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
  console.error(`npm test needs ${missing.map(([c]) => c).join(', ')}, which this machine lacks.`);
  console.error(`Install them with:\n\n  sudo apt-get update && sudo apt-get install -y ${packages}\n`);
  process.exit(1);
}
